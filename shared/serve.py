"""``python -m <service>``'s common part: check the cluster credential, then serve under uvicorn with the
same bind, TLS, keep-alive and connection limits for every service.

What is bounded (README "Limits"): idle keep-alive connections close after ``SERVER_KEEP_ALIVE``
seconds; past ``MAX_CONNECTIONS`` open connections and tasks uvicorn answers 503 at once; a request head
over 64 KiB is answered 431 and one not complete in ``HEADER_TIMEOUT`` seconds 408
(shared/header_limits.py); a request body that stops for ``BODY_IDLE_TIMEOUT`` seconds is given up and
one over its route's limit refused (shared/bodies.py). What a single process cannot bound: many clients
each trickling within those limits still fill ``MAX_CONNECTIONS``; on untrusted networks run a reverse
proxy in front of the user app, with per-client connection and rate limits (docs/deploy.md).
"""

from __future__ import annotations

import sys
from typing import Any

import uvicorn

from shared.auth.service_auth import ClusterAuth, SecretError
from shared.config import ServiceSettings
from shared.header_limits import bounded_protocol
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
                timeout_keep_alive=SERVER_KEEP_ALIVE, limit_concurrency=settings.max_connections,
                http=bounded_protocol(settings.header_timeout),
                **tls, **uvicorn_options)
