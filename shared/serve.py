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

import socket
import sys
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

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


def _bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` as uvicorn binds its own (``SO_REUSEADDR``, inheritable by
    worker processes). Exits with status 2 and one line on stderr when the port cannot be had."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        print(f"error: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        raise SystemExit(2) from None
    sock.set_inheritable(True)
    return sock


def serve(app: Any, settings: ServiceSettings, extra_ports: tuple[int, ...] = (), **uvicorn_options: Any) -> None:
    """Serve ``app`` (an ASGI app, or an import string with ``factory=True``) on ``HOST:PORT``, over TLS
    when ``TLS_CERT_FILE`` and ``TLS_KEY_FILE`` are set, and on each of ``extra_ports`` too (the user app's
    S3 port): one server and event loop per worker; the app tells the ports apart by ``scope["server"]``."""
    tls = {}
    if settings.tls_cert_file is not None:
        if settings.tls_key_file is None:
            print("error: TLS_CERT_FILE is set but TLS_KEY_FILE is not", file=sys.stderr)
            raise SystemExit(2)
        tls = {"ssl_certfile": str(settings.tls_cert_file), "ssl_keyfile": str(settings.tls_key_file)}
    options = dict(host=settings.host, port=settings.port, log_level="warning", access_log=False,
                   timeout_keep_alive=SERVER_KEEP_ALIVE, limit_concurrency=settings.max_connections,
                   http=bounded_protocol(settings.header_timeout), **tls, **uvicorn_options)
    if not extra_ports:
        uvicorn.run(app, **options)
        return
    # uvicorn.run binds one socket; with more, bind them here and hand them to its server (or to its
    # worker supervisor), as uvicorn.run does with its one.
    config = uvicorn.Config(app, **options)
    sockets = [_bind(settings.host, settings.port), *(_bind(settings.host, p) for p in extra_ports)]
    server = uvicorn.Server(config)
    try:
        if config.workers > 1:
            Multiprocess(config, sockets=sockets).run()
        else:
            server.run(sockets=sockets)
    except KeyboardInterrupt:
        pass
    if config.workers == 1 and not server.started:
        raise SystemExit(3)  # uvicorn's STARTUP_FAILURE: the app's startup failed
