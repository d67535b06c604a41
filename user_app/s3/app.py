"""The S3 ASGI app: finds the bucket and key (path style ``/bucket/key``, or virtual-host style
``bucket.<S3_DOMAIN>``), authenticates the request (``user_app/s3/auth.py``), picks the operation by
method, bucket, key and sub-resource, and answers every error in S3's XML format with ``Code``,
``Message``, ``Resource`` and ``RequestId`` (a HEAD's error has no body, as S3's). An operation RingFS does
not implement answers ``501 NotImplemented``.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import unquote_to_bytes

from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import Response

from shared.auth.service_auth import ClusterAuth
from shared.config import UserAppSettings
from user_app.s3 import buckets, deletes, listing, multipart, objects, versions, xml
from user_app.s3.auth import authenticate
from user_app.s3.buckets_known import KnownBuckets
from user_app.s3.context import S3Request
from user_app.s3.errors import S3Error, from_exception, not_implemented
from user_app.services import Services

log = logging.getLogger("ringfs.s3")

Operation = Callable[[S3Request], Awaitable[Response]]

# Sub-resources (query parameters that name an operation rather than qualify one) RingFS does not
# implement: their requests answer 501 instead of being taken for the plain operation.
UNSUPPORTED_BUCKET = frozenset({
    "accelerate", "acl", "analytics", "cors", "encryption", "intelligent-tiering", "inventory", "lifecycle",
    "logging", "metrics", "notification", "object-lock", "ownershipControls", "policy", "policyStatus",
    "publicAccessBlock", "replication", "requestPayment", "tagging", "website",
})
UNSUPPORTED_OBJECT = frozenset({
    "acl", "attributes", "legal-hold", "restore", "retention", "select", "tagging", "torrent",
})


def _bucket_operation(ctx: S3Request) -> Operation:
    method, query = ctx.request.method, ctx.request.query_params
    if method == "GET":
        if "location" in query:
            return buckets.get_bucket_location
        if "versioning" in query:
            return buckets.get_bucket_versioning
        if "uploads" in query:
            return multipart.list_multipart_uploads
        if "versions" in query:
            return versions.list_object_versions
        _refuse_unsupported(query, UNSUPPORTED_BUCKET, "this bucket operation")
        return listing.list_objects_v2 if query.get("list-type") == "2" else listing.list_objects_v1
    if method == "POST" and "delete" in query:
        return deletes.delete_objects
    if method == "PUT" and "versioning" in query:
        return buckets.put_bucket_versioning
    _refuse_unsupported(query, UNSUPPORTED_BUCKET | {"versioning", "location", "delete", "uploads", "versions"},
                        "this bucket operation")
    return _by_method(method, {"PUT": buckets.create_bucket, "HEAD": buckets.head_bucket,
                               "DELETE": buckets.delete_bucket})


def _object_operation(ctx: S3Request) -> Operation:
    method, query = ctx.request.method, ctx.request.query_params
    _refuse_unsupported(query, UNSUPPORTED_OBJECT, "this object operation")
    copy = "x-amz-copy-source" in ctx.request.headers
    if "uploadId" in query:  # an operation of a multipart upload
        if method == "PUT":
            return multipart.upload_part_copy if copy else multipart.upload_part
        return _by_method(method, {"POST": multipart.complete_multipart_upload, "GET": multipart.list_parts,
                                   "DELETE": multipart.abort_multipart_upload})
    if method == "POST" and "uploads" in query:
        return multipart.create_multipart_upload
    if method == "PUT":
        return objects.copy_object if copy else objects.put_object
    return _by_method(method, {"GET": objects.get_object, "HEAD": objects.get_object,
                               "DELETE": deletes.delete_object})


def _by_method(method: str, operations: dict[str, Operation]) -> Operation:
    operation = operations.get(method)
    if operation is None:
        raise _method_not_allowed(method)
    return operation


def _refuse_unsupported(query, names: frozenset[str], what: str) -> None:
    for name in query:
        if name in names:
            raise not_implemented(f"{what} (?{name})")


def _method_not_allowed(method: str) -> S3Error:
    return S3Error("MethodNotAllowed", "The specified method is not allowed against this resource.", 405,
                   Method=method)


def _operation(ctx: S3Request) -> Operation:
    if ctx.bucket is None:
        if ctx.request.method != "GET":
            raise _method_not_allowed(ctx.request.method)
        return buckets.list_buckets
    if ctx.key is None:
        return _bucket_operation(ctx)
    return _object_operation(ctx)


class S3App:
    """ASGI app of the S3 port. ``services_of()`` gives the user app's running :class:`Services` (made by
    the user API app's lifespan, which this app shares)."""

    def __init__(self, settings: UserAppSettings, auth: ClusterAuth, services_of: Callable[[], Services]) -> None:
        self.settings = settings
        self.insecure = auth.insecure
        self.services_of = services_of
        self.buckets = KnownBuckets()
        self.domain = ("." + settings.s3_domain.lower()) if settings.s3_domain else None
        self.state = State({"body_idle_timeout": settings.body_idle_timeout})  # read by shared/bodies.py

    def locate(self, scope) -> tuple[str | None, str | None]:
        """``(bucket, key)`` the request names (None where it names none). Raises ``InvalidURI`` for a
        path that is not UTF-8."""
        raw = (scope.get("raw_path") or scope["path"].encode()).split(b"?", 1)[0]
        try:
            path = unquote_to_bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise S3Error("InvalidURI", "Couldn't parse the specified URI: it is not UTF-8.", 400) from None
        path = path[1:] if path.startswith("/") else path
        host = _host(scope)
        if self.domain and host.endswith(self.domain) and len(host) > len(self.domain):
            return host[: -len(self.domain)], path or None
        bucket, slash, key = path.partition("/")
        return bucket or None, key if slash and key else None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        scope["app"] = self
        request = Request(scope, receive)
        request_id = secrets.token_hex(8).upper()
        resource = scope.get("path", "/")
        try:
            if scope["method"] == "OPTIONS":  # a CORS preflight: answered before authentication, as S3 does
                raise _no_cors(scope)
            bucket, key = self.locate(scope)
            services = self.services_of()
            caller = await authenticate(scope, services.keys, self.settings.s3_region, self.insecure)
            ctx = S3Request(request, caller, services, self.settings, self.buckets, bucket, key, request_id)
            response = await _operation(ctx)(ctx)
        except Exception as exc:  # every failure is an S3 error document
            response = self.error_response(exc, scope["method"], resource, request_id)
            if _has_body(scope):
                # The body may be unread (a client that sent Expect: 100-continue has not sent it): the
                # next bytes on this connection could be the body or a new request, so close it.
                response.headers["connection"] = "close"
        response.headers["x-amz-request-id"] = request_id
        response.headers["x-amz-id-2"] = request_id
        await response(scope, receive, send)

    def error_response(self, exc: Exception, method: str, resource: str, request_id: str) -> Response:
        error = from_exception(exc)
        if error is None:
            log.exception("S3 %s %s failed", method, resource)
            error = S3Error("InternalError", "We encountered an internal error. Please try again.", 500)
        root = xml.ET.Element("Error")  # S3's error documents carry no namespace
        xml.add_all(root, [("Code", error.code), ("Message", error.message), *error.extra.items(),
                           ("Resource", resource), ("RequestId", request_id)])
        headers = dict(error.headers)
        if error.code == "NoSuchBucket":
            headers["x-amz-bucket-region"] = self.settings.s3_region
        if method == "HEAD":
            return Response(status_code=error.status, headers=headers)
        return Response(xml.to_bytes(root), status_code=error.status, headers=headers, media_type=xml.XML_TYPE)


def _no_cors(scope) -> S3Error:
    """S3's answer to a preflight for a bucket without a CORS configuration (RingFS has none)."""
    if not any(name == b"origin" for name, _ in scope.get("headers", ())):
        return S3Error("BadRequest", "Insufficient information. Origin request header needed.", 400)
    return S3Error("AccessForbidden", "CORSResponse: CORS is not enabled for this bucket.", 403)


def _has_body(scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() not in (b"0", b"")):
            return True
    return False


def _host(scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"host":
            return value.decode("latin-1").rsplit(":", 1)[0].lower() if not value.startswith(b"[") else ""
    return ""
