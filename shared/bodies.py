"""Request bodies, bounded in size and in time: every endpoint that reads a body reads it through here.

* **Size**: :class:`BodyLimitMiddleware` sits outermost on every app with a table of per-route limits
  (``JSON_BODY_LIMIT`` for any route not in it). It answers 413 ``{"error": ...}`` to an announced
  ``Content-Length`` over the limit before the app (or its authentication) sees the request, and stops
  a body that grows past the limit while being read (no length, or a false one), so no body is ever
  read without a limit. :func:`read_body` adds a tighter limit where a route knows one.
  (Starlette's own ``max_body_size`` answers its 413 in plain text, which our clients cannot parse.)
* **Time**: :func:`iter_body` gives up with 408 when no byte arrived for ``BODY_IDLE_TIMEOUT`` seconds
  (default 30), so a client that stops sending in the middle of a body holds nothing for long; an
  upload's pending chunks are then aborted at once by the writer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import AsyncIterator, Sequence

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import PayloadTooLarge, RequestTimeout, error_response

# Bodies of routes that take JSON (registrations, renames, keys, txn-id lists): 1 MiB is thousands of
# entries, far more than any of them needs.
JSON_BODY_LIMIT = 1024 * 1024
DEFAULT_BODY_IDLE_TIMEOUT = 30.0  # seconds without a byte of a body before it is given up (408)


def idle_timeout(request: Request) -> float:
    return getattr(request.app.state, "body_idle_timeout", DEFAULT_BODY_IDLE_TIMEOUT)


async def iter_body(request: Request) -> AsyncIterator[bytes]:
    """The body's blocks as they arrive. Raises :class:`RequestTimeout` (408) when no block arrives for
    ``BODY_IDLE_TIMEOUT`` seconds."""
    idle = idle_timeout(request)
    blocks = request.stream().__aiter__()
    while True:
        try:
            async with asyncio.timeout(idle):  # no task per block, unlike wait_for (rpc_cost: ~20 µs each)
                block = await anext(blocks)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise RequestTimeout(f"no byte of the request body arrived for {idle:g} s") from None
        if block:
            yield block


async def read_body(request: Request, limit: int) -> bytes:
    """The whole request body, at most ``limit`` bytes.

    Raises :class:`PayloadTooLarge` (413) when the announced ``Content-Length`` exceeds ``limit``, before
    anything is read, and when the body grows past ``limit`` while being read (no length, or a false one),
    so an oversized body is never held whole in memory; :class:`RequestTimeout` (408) when it stalls.
    """
    announced = request.headers.get("content-length")
    if announced is not None and announced.isdigit() and int(announced) > limit:
        raise PayloadTooLarge(f"body of {announced} bytes exceeds the limit of {limit} bytes")
    blocks, size = [], 0
    async for block in iter_body(request):
        size += len(block)
        if size > limit:
            raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes")
        blocks.append(block)
    return b"".join(blocks)


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a body grows past its route's limit. An ``HTTPException`` (not a
    :class:`PayloadTooLarge`) because FastAPI passes only those through while it parses a JSON body; the
    apps' handler answers it as 413 ``{"error": ...}`` like any other."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"body exceeds the limit of {limit} bytes")


@dataclass(frozen=True)
class BodyLimit:
    """At most ``limit`` bytes of body for ``method`` on ``path``; ``path`` ending in ``/`` is a prefix."""

    method: str
    path: str
    limit: int

    def matches(self, method: str, path: str) -> bool:
        if method != self.method:
            return False
        return path.startswith(self.path) if self.path.endswith("/") else path == self.path


class BodyLimitMiddleware:
    """Bound every request body (pure ASGI, so it adds no task and no copy).

    ``limits``: the routes that take more (or less) than ``default`` bytes, first match wins. A
    ``Content-Length`` over the limit is answered 413 at once, one that is not a number 400; a body that
    passes the limit while the app reads it raises :class:`BodyTooLarge` (413) inside the app.
    """

    def __init__(self, app: ASGIApp, limits: Sequence[BodyLimit] = (), default: int = JSON_BODY_LIMIT) -> None:
        self.app = app
        self.limits = tuple(limits)
        self.default = default

    def limit_for(self, method: str, path: str) -> int:
        for rule in self.limits:
            if rule.matches(method, path):
                return rule.limit
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["method"], scope["path"])
        announced = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if announced is not None:
            if not (announced.isdigit() and announced.isascii()):
                await error_response(400, "Content-Length is not a number of bytes")(scope, receive, send)
                return
            if int(announced) > limit:
                message = f"body of {int(announced)} bytes exceeds the limit of {limit} bytes"
                await error_response(413, message, {"Connection": "close"})(scope, receive, send)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited_receive, send)
