"""The RingFS error family and the one exception handler every app installs.

After httpx's ``_exceptions.py``: one base class, families under it, each carrying the HTTP status it
maps to. Lower-layer errors (httpx transport errors, SQL errors) are translated into these at the
boundary where they happen; every service answers errors as JSON ``{"error": "..."}``.
"""

from __future__ import annotations

import logging
from typing import Callable, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from shared.http import JSONResponse
from starlette.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("ringfs.errors")


# On a standby's 503: the active leader's URL, or empty when it is not known (leader/election.py); clients
# follow it (shared/rpc/leader_client.py).
ACTIVE_LEADER_HEADER = "X-RingFS-Active-Leader"


class RingFSError(Exception):
    """Base of every error RingFS raises on purpose. ``status`` is the HTTP status it maps to."""

    status = 500

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers


class BadRequest(RingFSError):
    """The request is malformed: bad path, bad body, bad parameter."""

    status = 400


class Unencodable(BadRequest, ValueError):
    """A protocol encoder was given input it cannot frame (a txn id outside the rule, a path too long for
    its length field). Also a ``ValueError``, since it is a bad value handed to a function."""


class Unauthorized(RingFSError):
    """No credential, or one that does not check out (a wrong key or secret, an expired signature)."""

    status = 401


class Forbidden(RingFSError):
    """The credential is good, but its key may not do this (no grant on the path, not an admin)."""

    status = 403


class NotFound(RingFSError):
    """No such file, version, transaction or server."""

    status = 404


class RequestTimeout(RingFSError):
    """The client stopped sending its request body (``BODY_IDLE_TIMEOUT`` seconds without a byte)."""

    status = 408


class Conflict(RingFSError):
    """The request conflicts with the current state (e.g. rename onto an existing path)."""

    status = 409


class Gone(RingFSError):
    """The transaction expired and was swept before it committed."""

    status = 410


class PreconditionFailed(RingFSError):
    """A conditional request failed (``If-None-Match: *`` on an existing path)."""

    status = 412


class PayloadTooLarge(RingFSError):
    """The body is larger than this endpoint accepts."""

    status = 413


class RangeNotSatisfiable(RingFSError):
    """The ``Range`` header does not overlap the file."""

    status = 416


class IntegrityFailure(RingFSError):
    """Data does not match its SHA-256 digest."""

    status = 422


class Unavailable(RingFSError):
    """A dependency (leader, enough chunk servers, every replica of a chunk) cannot be reached now."""

    status = 503


class NotActiveLeader(Unavailable):
    """This leader is a standby, or its term has ended (``leader/election.py``): ask the active one.
    ``active_url`` names it when known."""

    def __init__(self, message: str, active_url: str | None = None) -> None:
        super().__init__(message, headers={ACTIVE_LEADER_HEADER: active_url or ""})
        self.active_url = active_url


class UpstreamError(RingFSError):
    """A peer answered with an error we cannot pass on as the caller's fault."""

    status = 502


# A peer's error status → the class its caller raises, so a 404 from the leader is a NotFound at the user
# app too. Anything else a peer answers ≥ 400 is an UpstreamError: the caller is not at fault. That
# includes a peer's 401 and 403, which say the *service's* cluster credential was refused, not the user's.
_BY_STATUS: dict[int, type[RingFSError]] = {
    cls.status: cls for cls in (BadRequest, NotFound, Conflict, Gone, PreconditionFailed, PayloadTooLarge,
                                RangeNotSatisfiable, IntegrityFailure, Unavailable)
}


def error_for_status(status: int, message: str, peer: str = "") -> RingFSError:
    """The :class:`RingFSError` for a peer's (or a batch item's) error ``status`` and ``message``: the class
    of that status, or :class:`UpstreamError` naming ``peer`` for a status outside the family."""
    cls = _BY_STATUS.get(status)
    if cls is None:
        return UpstreamError(f"{peer or 'peer'} answered {status}: {message}")
    return cls(message)


def validation_message(errors: list[dict]) -> str:
    """The one-line message of a 400 for pydantic / FastAPI validation ``errors`` (``exc.errors()``):
    ``invalid request: <where>: <what>; ...``."""
    problems = []
    for err in errors:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "request"
        problems.append(f"{where}: {err.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(problems)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON error body every RingFS service returns."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


ErrorPage = Callable[[Request, int, str], Optional[Response]]


def install_error_handlers(app: FastAPI, error_page: ErrorPage | None = None) -> None:
    """Map RingFS errors, FastAPI validation errors and HTTP errors to JSON ``{"error": ...}``; anything
    unexpected becomes a logged 500 without a traceback in the body. ``error_page(request, status,
    message)`` may answer instead (the web page's HTML errors); None from it means JSON."""

    def answer(request: Request, status: int, message: str, headers: dict | None = None) -> Response:
        page = error_page(request, status, message) if error_page is not None else None
        return page if page is not None else error_response(status, message, headers)

    @app.exception_handler(RingFSError)
    async def _ringfs_error(request: Request, exc: RingFSError) -> Response:
        return answer(request, exc.status, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        return answer(request, 400, validation_message(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return answer(request, exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return answer(request, 500, f"internal error: {type(exc).__name__}")
