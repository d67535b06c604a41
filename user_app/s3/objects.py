"""Object operations: PutObject, GetObject, HeadObject, DeleteObject, DeleteObjects, CopyObject (S3 API
reference), on the user app's own write and read paths (2PC writes, verified streaming reads).

* ETag: the MD5 of the content (``"<hex>"``), recorded by every write since the S3 API came, by the user
  API's too; a version written before has none and shows its SHA-256, the user API's ETag.
* ``x-amz-version-id``: the RingFS version number. ``Content-Type`` and ``x-amz-meta-*`` are kept with the
  version; a version without a stored type is served with the type its name suggests.
* Conditional requests: RFC 9110 §13.2.2 against the S3 ETag and the commit time
  (``user_app/preconditions.py``); ``If-None-Match: *`` and ``If-Match`` on PUT are checked by the leader
  atomically with the commit.
"""

from __future__ import annotations

import mimetypes
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from urllib.parse import unquote

import orjson
from starlette.responses import Response, StreamingResponse

from shared.errors import NotFound, PreconditionFailed, RangeNotSatisfiable
from shared.protocol.models import VersionInfo
from shared.protocol.rules import MAX_USER_METADATA_BYTES, canonical_user_metadata
from user_app.auth.audit import audited
from user_app.preconditions import NotModified, check_read, http_date, last_modified, parse_etags
from user_app.ranges import parse_range
from user_app.reader import chain_first
from user_app.s3 import xml
from user_app.s3.context import S3Request
from user_app.s3.errors import S3Error, invalid_argument, no_such_key
from user_app.s3.names import EMPTY_MD5, ObjectName, bucket_folder, object_name
from user_app.s3.object_headers import checksum_entries, checksum_mode, encoded, served_headers, standard_headers
from user_app.s3.versions import delete_marker_read, latest_delete_marker, parse_version_ref
from user_app.s3.payload import VerifiedBody
from user_app.writer import ObjectMetadata

# AWS's limit on one PutObject (larger objects take a multipart upload).
MAX_PUT_SIZE = 5 * 1024**3
META_PREFIX = "x-amz-meta-"
# GetObject's response-* query parameters and the header each one sets.
RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type", "response-content-language": "Content-Language",
    "response-expires": "Expires", "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition", "response-content-encoding": "Content-Encoding",
}


def etag_of(info: VersionInfo) -> str:
    """A version's S3 ETag without quotes (see the module docstring)."""
    return info.etag or info.sha256


def version_id(raw: str | None) -> int | None:
    """``?versionId=`` of a read: a RingFS version number. ``null`` (what S3 calls the version of an
    unversioned write) means the latest. Raises ``MethodNotAllowed`` (405) for a delete marker's id, as
    S3 does, and ``InvalidArgument`` for anything else."""
    if raw is None:
        return None
    ref = parse_version_ref(raw)
    if ref.is_marker:
        raise delete_marker_read(raw)
    return ref.number


def _quoted_etags(value: str | None) -> str | None:
    """An If-Match / If-None-Match value with bare tags quoted (S3 clients send both forms)."""
    if value is None or value.strip() == "*" or '"' in value:
        return value
    return ", ".join(f'"{tag.strip()}"' for tag in value.split(",") if tag.strip())


class Conditions:
    """The request's conditional headers under their standard names, ETags quoted."""

    def __init__(self, headers, prefix: str = "") -> None:
        self._values = {name: headers.get(prefix + name) for name in
                        ("if-match", "if-none-match", "if-modified-since", "if-unmodified-since")}
        for name in ("if-match", "if-none-match"):
            self._values[name] = _quoted_etags(self._values[name])

    def get(self, name: str) -> str | None:
        return self._values.get(name)


def _metadata_headers(info: VersionInfo) -> dict[str, str]:
    return {META_PREFIX + k: v for k, v in (info.user_metadata or {}).items()}


def _content_type(info: VersionInfo) -> str:
    return info.content_type or mimetypes.guess_type(info.path)[0] or "binary/octet-stream"


def _object_headers(info: VersionInfo) -> dict[str, str]:
    return {"ETag": f'"{etag_of(info)}"', "Last-Modified": http_date(last_modified(info)),
            "x-amz-version-id": str(info.version), **_metadata_headers(info)}


def _name(ctx: S3Request) -> ObjectName:
    return object_name(bucket_folder(ctx.bucket), ctx.key)


def request_metadata(ctx: S3Request, extra_headers: dict[str, str] | None = None) -> ObjectMetadata:
    """The ``Content-Type``, ``x-amz-meta-*`` and standard object headers of a write (with
    ``extra_headers``), as :class:`ObjectMetadata`. Raises ``MetadataTooLarge`` past S3's 2 KB of user
    metadata."""
    pairs = {}
    for name, value in ctx.request.headers.items():
        if name.startswith(META_PREFIX) and len(name) > len(META_PREFIX):
            key = name[len(META_PREFIX):]
            pairs[key] = f"{pairs[key]},{value}" if key in pairs else value
    if sum(len(k.encode()) + len(v.encode()) for k, v in pairs.items()) > MAX_USER_METADATA_BYTES:
        raise S3Error("MetadataTooLarge", "Your metadata headers exceed the maximum allowed metadata size.",
                      400, MaxSizeAllowed=str(MAX_USER_METADATA_BYTES))
    content_type = ctx.request.headers.get("content-type")
    headers = {**standard_headers(ctx.request.headers), **(extra_headers or {})}
    return ObjectMetadata(content_type=content_type or None,
                          user_metadata=canonical_user_metadata(pairs) if pairs else None,
                          object_headers=encoded(headers))


async def body_with_checksum(body: VerifiedBody, metadata: ObjectMetadata) -> AsyncIterator[bytes]:
    """``body``'s blocks; once it ended (and its checksum matched), ``metadata`` gets the checksum among
    its object headers, before the writer prepares the version (``ObjectMetadata``)."""
    async for block in body:
        yield block
    if body.checksum is not None:
        stored = orjson.loads(metadata.object_headers) if metadata.object_headers else {}
        metadata.object_headers = encoded({**stored, **checksum_entries(body.checksum)})


async def live_etag_condition(ctx: S3Request, path: str, if_match: str) -> str:
    """A PUT's S3 ``If-Match`` as the leader's condition: the SHA-256 of the live version when its S3
    ETag is listed (the leader then checks, atomically with the commit, that this version is still the
    live one), else :class:`PreconditionFailed`; ``NoSuchKey`` when the key has no live version, as S3
    answers."""
    try:
        current = await ctx.services.leader.rpc_stat(path)
    except NotFound:
        raise no_such_key(ctx.key or path) from None
    tags = parse_etags("If-Match", _quoted_etags(if_match))
    if tags is not None and not any(not weak and tag == etag_of(current) for weak, tag in tags):
        raise PreconditionFailed(f'If-Match failed: the live version has ETag "{etag_of(current)}"')
    return "*" if tags is None else current.sha256


async def put_object(ctx: S3Request) -> Response:
    """PutObject. A key ending in ``/`` with an empty body is a folder marker: the explicit folder."""
    name = _name(ctx)
    ctx.principal.check_write(name.path)
    if name.folder:
        try:  # a marker holds no byte: a body is refused as soon as it is announced or arrives
            async for _ in VerifiedBody(ctx.request, ctx.caller.verified, 0):
                pass
        except S3Error as exc:
            if exc.code != "EntityTooLarge":
                raise
            raise invalid_argument("A key ending in '/' is a folder in RingFS and cannot hold data.", "key",
                                   name.key) from None
        await ctx.require_bucket()
        with audited(ctx.principal, "s3 put folder", name.path):
            await ctx.services.leader.rpc_create_folder(name.path)
        return Response(status_code=200, headers={"ETag": f'"{EMPTY_MD5}"'})
    body = VerifiedBody(ctx.request, ctx.caller.verified, MAX_PUT_SIZE)
    inm = ctx.request.headers.get("if-none-match")
    if inm is not None and inm.strip() != "*":
        raise S3Error("NotImplemented", "PutObject takes only 'If-None-Match: *'.", 501)
    metadata = request_metadata(ctx)
    await ctx.require_bucket()
    if_match = ctx.request.headers.get("if-match")
    leader_if_match = None if if_match is None else await live_etag_condition(ctx, name.path, if_match)
    with audited(ctx.principal, "s3 put", name.path) as details:
        result = await ctx.services.writer.write(name.path, body_with_checksum(body, metadata),
                                                 size_hint=body.declared_size,
                                                 create_only=inm is not None, if_match=leader_if_match,
                                                 metadata=metadata)
        details["version"] = result.version
    headers = {"ETag": f'"{result.etag}"', "x-amz-version-id": str(result.version)}
    if body.checksum is not None:
        headers[f"x-amz-checksum-{body.checksum.algorithm}"] = body.checksum.value
    return Response(status_code=200, headers=headers)


async def get_object(ctx: S3Request) -> Response:
    """GetObject and HeadObject: Range, ``versionId``, ``response-*`` overrides, conditional headers."""
    name = _name(ctx)
    ctx.principal.check_read(name.path)
    version = version_id(ctx.query("versionId"))
    if name.folder:
        return await _get_folder_marker(ctx, name)
    reader = ctx.services.reader
    try:
        view = await reader.open(name.path, version)
    except NotFound:
        await ctx.require_bucket()
        if version is not None:
            raise S3Error("NoSuchVersion", "The specified version does not exist.", 404, Key=name.key,
                          VersionId=str(version)) from None
        error = no_such_key(name.key)
        marker = await latest_delete_marker(ctx, name.path)
        if marker is not None:  # as S3 tells a deleted key from one that never was
            error.headers = {"x-amz-delete-marker": "true", "x-amz-version-id": marker}
        raise error from None
    info = view.info
    part = ctx.query("partNumber")
    if part is not None:  # a single upload is one part; the parts of a completed upload are not kept
        if "-" in etag_of(info):
            raise S3Error("NotImplemented", "GetObject of one part of a multipart object is not implemented: "
                          "read it with a Range.", 501)
        if part != "1":
            raise S3Error("InvalidPart", "The requested partnumber is not satisfiable", 400, PartNumber=part[:16])
    headers = _object_headers(info)
    try:
        check_read(Conditions(ctx.request.headers), info, etag_of(info))
    except NotModified:
        return Response(status_code=304, headers=headers)
    headers["Accept-Ranges"] = "bytes"
    headers["Content-Type"] = _content_type(info)
    size = view.size
    try:
        rng = parse_range(ctx.request.headers.get("range"), size)
    except RangeNotSatisfiable:
        raise S3Error("InvalidRange", "The requested range is not satisfiable", 416,
                      ActualObjectSize=str(size)) from None
    headers.update(served_headers(info, with_checksum=checksum_mode(ctx.request.headers) and rng is None))
    for param, header in RESPONSE_OVERRIDES.items():
        value = ctx.query(param)
        if value is not None:
            headers[header] = value
    status, start, end = 200, 0, size - 1
    if rng is not None:
        status, (start, end) = 206, rng
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(end - start + 1 if size else 0)
    if ctx.request.method == "HEAD" or size == 0:
        return Response(status_code=status, headers=headers)
    blocks = reader.stream(view, start, end)
    first = await anext(blocks)  # a file with no reachable copy is an error answer, not a broken 200
    return StreamingResponse(chain_first(first, blocks), status_code=status, headers=headers)


async def _get_folder_marker(ctx: S3Request, name: ObjectName) -> Response:
    try:
        folder = await ctx.services.leader.rpc_folder(name.path)
    except NotFound:
        folder = None
    if folder is None or not folder.get("explicit"):
        await ctx.require_bucket()
        raise no_such_key(name.key)
    created = folder.get("created_at") or 0.0
    headers = {"ETag": f'"{EMPTY_MD5}"', "Content-Length": "0", "Content-Type": "application/x-directory",
               "Last-Modified": http_date(datetime.fromtimestamp(int(created), timezone.utc))}
    return Response(status_code=200, headers=headers)


def copy_source(ctx: S3Request) -> tuple[ObjectName, int | None]:
    raw = ctx.request.headers["x-amz-copy-source"]
    source, _, query = raw.partition("?")
    source = unquote(source).lstrip("/")
    bucket, slash, key = source.partition("/")
    if not slash or not key:
        raise invalid_argument("x-amz-copy-source must be <bucket>/<key>[?versionId=<id>]",
                               "x-amz-copy-source", raw)
    version = None
    if query:
        name, eq, value = query.partition("=")
        if name != "versionId" or not eq:
            raise invalid_argument("x-amz-copy-source takes only ?versionId=", "x-amz-copy-source", raw)
        version = version_id(unquote(value))
    return object_name(bucket_folder(bucket), key), version


async def copy_object(ctx: S3Request) -> Response:
    """CopyObject: the new version shares the source's chunks (no data moves), with the source's
    metadata (``x-amz-metadata-directive: COPY``, the default) or the request's (``REPLACE``)."""
    dst = _name(ctx)
    src, src_version = copy_source(ctx)
    ctx.principal.check_read(src.path)
    ctx.principal.check_write(dst.path)
    if src.folder or dst.folder:
        raise invalid_argument("RingFS cannot copy folder markers.", "x-amz-copy-source", src.key)
    directive = (ctx.request.headers.get("x-amz-metadata-directive") or "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise invalid_argument("Unknown metadata directive.", "x-amz-metadata-directive", directive)
    await ctx.require_bucket()
    leader = ctx.services.leader
    try:
        source = await leader.rpc_stat(src.path, src_version)
    except NotFound:
        raise no_such_key(src.key) from None
    if src.path == dst.path and src_version is None and directive == "COPY":
        raise S3Error("InvalidRequest", "This copy request is illegal because it is trying to copy an object to "
                      "itself without changing the object's metadata, storage class, website redirect "
                      "location or encryption attributes.", 400)
    try:
        check_read(Conditions(ctx.request.headers, "x-amz-copy-source-"), source, etag_of(source))
    except NotModified:
        raise PreconditionFailed("a copy-source precondition failed") from None
    metadata = request_metadata(ctx) if directive == "REPLACE" else ObjectMetadata()
    with audited(ctx.principal, "s3 copy", f"{src.path} -> {dst.path}"):
        info = await leader.rpc_copy(src.path, dst.path, src_version=source.version,
                                     metadata=directive.lower(), content_type=metadata.content_type,
                                     user_metadata=metadata.user_metadata, object_headers=metadata.object_headers)
    root = xml.document("CopyObjectResult")
    xml.add_all(root, [("LastModified", xml.iso_time(info.committed_at or info.created_at)),
                       ("ETag", f'"{etag_of(info)}"')])
    return ctx.xml(root, headers={"x-amz-version-id": str(info.version),
                                  "x-amz-copy-source-version-id": str(source.version)})
