"""S3 errors: the code, message and status AWS gives, answered in S3's XML error format (S3 API reference,
"Error responses": ``<Error><Code/><Message/><Resource/><RequestId/></Error>``)."""

from __future__ import annotations

from collections.abc import Mapping

from shared.auth.sigv4 import SigV4Error
from shared.errors import (
    BadRequest, Conflict, Forbidden, Gone, NotFound, PayloadTooLarge, PreconditionFailed, RequestTimeout,
    RingFSError, Unauthorized, Unavailable,
)


class S3Error(Exception):
    """An S3 error answer: ``code`` (``NoSuchKey``), ``message``, HTTP ``status`` and the extra elements
    AWS adds to its error document (``BucketName``, ``Key``, ...); ``headers`` go on the answer (a delete
    marker's ``x-amz-delete-marker``)."""

    def __init__(self, code: str, message: str, status: int, *, headers: dict[str, str] | None = None,
                 **extra: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.headers = headers or {}
        self.extra = extra


def no_such_bucket(bucket: str) -> S3Error:
    return S3Error("NoSuchBucket", "The specified bucket does not exist", 404, BucketName=bucket)


def no_such_key(key: str) -> S3Error:
    return S3Error("NoSuchKey", "The specified key does not exist.", 404, Key=key)


def invalid_argument(message: str, name: str | None = None, value: str | None = None) -> S3Error:
    extra = {} if name is None else {"ArgumentName": name, "ArgumentValue": (value or "")[:256]}
    return S3Error("InvalidArgument", message, 400, **extra)


def not_implemented(what: str) -> S3Error:
    return S3Error("NotImplemented", f"{what} is not implemented by RingFS.", 501)


# RingFS errors the operations let through, as S3 names them; NotFound is named by each operation
# (NoSuchKey, NoSuchBucket, NoSuchVersion), which knows what was missing.
_FROM_RINGFS: list[tuple[type[RingFSError], str, int]] = [
    (PreconditionFailed, "PreconditionFailed", 412),
    (NotFound, "NoSuchKey", 404),
    (Conflict, "OperationAborted", 409),
    (Forbidden, "AccessDenied", 403),
    (Unauthorized, "AccessDenied", 403),
    (PayloadTooLarge, "EntityTooLarge", 400),
    (RequestTimeout, "RequestTimeout", 400),
    (BadRequest, "InvalidArgument", 400),
    (Unavailable, "ServiceUnavailable", 503),
    (Gone, "ServiceUnavailable", 503),
]


def from_exception(exc: Exception) -> S3Error | None:
    """The :class:`S3Error` for ``exc`` (a SigV4, RingFS or S3 error), or None for anything else (a bug:
    the app answers ``InternalError`` and logs it)."""
    if isinstance(exc, S3Error):
        return exc
    if isinstance(exc, SigV4Error):
        return S3Error(exc.code, exc.message, exc.status, **_safe(exc.extra))
    if isinstance(exc, RingFSError):
        for kind, code, status in _FROM_RINGFS:
            if isinstance(exc, kind):
                return S3Error(code, exc.message, status)
        return S3Error("InternalError", exc.message, exc.status if exc.status >= 500 else 500)
    return None


def _safe(extra: Mapping[str, str]) -> dict[str, str]:
    """Extra elements that are valid XML tag names (AWS's own are: ``X-Amz-Expires`` included)."""
    return {k: v for k, v in extra.items() if k.replace("-", "").isalnum()}
