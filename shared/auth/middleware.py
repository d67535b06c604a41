"""The cluster boundary of the leader and the chunk servers: a pure ASGI middleware in front of every route.

Every request needs a valid cluster credential (``shared/auth/rpc_signing.py``) except ``GET /healthz``
(liveness for Docker and load balancers; the leader's health checks carry a credential and get a proof
back, ``chunk_server/routes.py``); ``GET /metrics`` takes ``Authorization: Bearer <METRICS_TOKEN>`` instead
when a token is set. Anything else answers ``401 {"error": ...}`` before it reaches a route, so no
handler ever runs for an unauthenticated peer.
"""

from __future__ import annotations

import orjson

from shared.auth.rpc_signing import HEADER
from shared.auth.service_auth import ClusterAuth
from shared.errors import Unauthorized

OPEN_PATHS = frozenset({"/healthz"})
CLUSTER_HEADER = HEADER.lower().encode()
METRICS_PATH = "/metrics"


def request_target(scope) -> str:
    """The request's path and query exactly as the client sent them: what the credential signs."""
    raw = scope.get("raw_path") or scope["path"].encode()
    qs = scope.get("query_string") or b""
    return raw.decode("latin-1") + ("?" + qs.decode("latin-1") if qs else "")


def header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


async def send_json_error(send, status: int, message: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = orjson.dumps({"error": message})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


class ClusterAuthMiddleware:
    """Refuses (401) every request without the cluster credential, except ``GET /healthz``."""

    def __init__(self, app, auth: ClusterAuth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self.auth.insecure:
            return await self.app(scope, receive, send)
        path, method = scope["path"], scope["method"]
        if path in OPEN_PATHS and method in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        try:
            if path == METRICS_PATH:
                self.auth.check_metrics(header(scope, b"authorization"), header(scope, CLUSTER_HEADER),
                                        method, request_target(scope))
            else:
                self.auth.check_internal(header(scope, CLUSTER_HEADER), method, request_target(scope))
        except Unauthorized as exc:
            return await send_json_error(send, 401, exc.message, [(b"www-authenticate", b"RingFS-RPC")])
        return await self.app(scope, receive, send)
