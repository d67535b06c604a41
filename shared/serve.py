"""``python -m <service>``'s common part: check the cluster credential, then serve under uvicorn with the
same bind, TLS and keep-alive rules for every service."""

from __future__ import annotations

import sys
from typing import Any

import uvicorn

from shared.auth.service_auth import ClusterAuth, SecretError
from shared.config import ServiceSettings
from shared.http import SERVER_KEEP_ALIVE


def cluster_auth_or_exit(settings: ServiceSettings, service: str) -> ClusterAuth:
    """The service's :class:`ClusterAuth`; without a usable secret, one line on stderr that says how to
    make one, and exit status 2 (the service does not start)."""
    try:
        return ClusterAuth.from_settings(settings, service)
    except SecretError as exc:
        print(f"{service}: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def serve(app: Any, settings: ServiceSettings, **uvicorn_options: Any) -> None:
    """Serve ``app`` (an ASGI app, or an import string with ``factory=True``) on ``HOST:PORT``, over TLS
    when ``TLS_CERT_FILE`` and ``TLS_KEY_FILE`` are set."""
    tls = {}
    if settings.tls_cert_file is not None:
        if settings.tls_key_file is None:
            print("error: TLS_CERT_FILE is set but TLS_KEY_FILE is not", file=sys.stderr)
            raise SystemExit(2)
        tls = {"ssl_certfile": str(settings.tls_cert_file), "ssl_keyfile": str(settings.tls_key_file)}
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False,
                timeout_keep_alive=SERVER_KEEP_ALIVE, **tls, **uvicorn_options)
