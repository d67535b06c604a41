"""The ``/dav`` share: WsgiDAV (RFC 4918 class 1 and 2) over the RingFS provider, run by a2wsgi in worker
threads, mounted in the user API app so that its Basic authentication (the access keys) runs first.

The ASGI side hands WsgiDAV the request's principal (``scope["state"]``, set by
``user_app.auth.authentication``), the services and a bridge to their event loop, in the ASGI scope
a2wsgi passes on as ``environ["asgi.scope"]``. WsgiDAV's own authentication is off: the request is
authenticated already. Dead properties are kept in the leader's SQL (``user_app/dav/properties.py``);
locks are WsgiDAV's lock manager, in this process's memory.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from a2wsgi import WSGIMiddleware
from wsgidav.error_printer import ErrorPrinter
from wsgidav.request_resolver import RequestResolver
from wsgidav.wsgidav_app import WsgiDAVApp

from user_app.dav.bridge import LoopBridge
from user_app.dav.properties import LeaderPropertyManager
from user_app.dav.provider import SCOPE_BRIDGE, SCOPE_SERVICES, Caller, RingFSProvider
from user_app.services import Services

MOUNT = "/dav"
# Threads serving DAV requests at once (each blocks while its request waits on the event loop).
DAV_THREADS = 16


def _wsgidav_config() -> dict:
    return {
        "provider_mapping": {MOUNT: RingFSProvider()},
        "mount_path": None,
        "middleware_stack": [ErrorPrinter, RequestResolver],  # no WsgiDAV auth: ours ran first
        "http_authenticator": {"domain_controller": None, "accept_basic": False, "accept_digest": False,
                               "default_to_digest": False, "trusted_auth_header": None},
        "lock_storage": True,
        "property_manager": LeaderPropertyManager(MOUNT, Caller),
        "dir_browser": {"enable": False},
        "add_header_MS_Author_Via": True,
        "suppress_version_info": True,
        "verbose": 1,
        "logging": {"enable": False},
    }


class DavApp:
    """ASGI: the ``/dav`` share (see the module docstring). ``services_of()`` gives the running
    :class:`Services`."""

    def __init__(self, services_of: Callable[[], Services]) -> None:
        self.services_of = services_of
        self.wsgi = WSGIMiddleware(WsgiDAVApp(_wsgidav_config()), workers=DAV_THREADS)
        logging.getLogger("wsgidav").setLevel(logging.WARNING)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        principal = scope.get("state", {}).get("principal")
        scope = {**scope, "root_path": "", SCOPE_SERVICES: self.services_of(),
                 SCOPE_BRIDGE: LoopBridge(asyncio.get_running_loop()),
                 # WsgiDAV names lock owners and logs by this user name
                 "state": {**scope.get("state", {}), "principal": principal}}
        await self.wsgi(scope, receive, send)
