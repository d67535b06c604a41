"""Multipart uploads (S3 API reference): CreateMultipartUpload, UploadPart, UploadPartCopy,
CompleteMultipartUpload, AbortMultipartUpload, ListParts, ListMultipartUploads.

How the parts are stored once: each part is a 2PC write of its own (``user_app/writer.py``), all of one
upload in the same chunk size (the leader's ``STREAMED_CHUNK_SIZE``, 64 KiB), committed on the chunk
servers and recorded by the leader as a *part* of the upload, invisible to every listing. Completing
the upload makes the object's version out of the parts' chunk lists in one leader transaction: when every
part but the last is a whole number of chunks (5 MiB, 8 MiB and every size clients use by default are),
no chunk is written again. The upload's chunks are read once, verified, to compute the object's SHA-256
(the user API's ETag and ``ringfs stat`` need the content's real hash); nothing is copied.

A part whose size is not a whole number of chunks (a client with odd part sizes) cannot be joined that
way: that upload is completed by streaming its parts into a new version, the one case that copies
(README "S3"); two concurrent completions of such an upload may both write a version, where the
aligned path completes an upload exactly once. The object's S3 ETag is the MD5 of the parts' MD5s with ``-<parts>`` either way, as AWS
computes it. Uploads not completed within ``MULTIPART_TTL`` (7 days) are aborted by the leader's sweeper.
"""

from __future__ import annotations

import base64
import hashlib
import time

from starlette.responses import Response

from shared.errors import BadRequest, NotFound, PreconditionFailed
from shared.protocol.manifests import Manifest
from shared.protocol.models import VersionInfo
from shared.protocol.rules import (
    CHECKSUM_TYPE_HEADER, MAX_PART_NUMBER, canonical_user_metadata, multipart_etag, split_checksum,
)
from user_app.auth.audit import audited
from user_app.s3 import xml
from user_app.s3.buckets import owner
from user_app.s3.context import S3Request
from user_app.s3.errors import S3Error, invalid_argument
from user_app.s3.names import ObjectName, bucket_folder, key_of, object_name
from user_app.s3.object_headers import (
    XML_NAMES, CompletedChecksum, checksum_element, checksum_of, encoded, upload_checksum, upload_checksum_answer,
)
from user_app.s3.objects import (
    MAX_PUT_SIZE, Conditions, body_with_checksum, copy_source, etag_of, live_etag_condition, request_metadata,
)
from user_app.preconditions import NotModified, check_read
from user_app.ranges import parse_range
from user_app.s3.payload import VerifiedBody, read_small
from user_app.writer import ObjectMetadata

# What the leader's plan of a completion can find wrong with the listed parts (leader/assembly.py).
PART_PROBLEMS = frozenset({"InvalidPart", "InvalidPartOrder", "EntityTooSmall", "EntityTooLarge"})
MAX_LISTED = 1000


def no_such_upload(upload_id: str) -> S3Error:
    return S3Error("NoSuchUpload", "The specified upload does not exist. The upload ID may be invalid, or the "
                   "upload may have been aborted or completed.", 404, UploadId=upload_id[:128])


def _name(ctx: S3Request) -> ObjectName:
    name = object_name(bucket_folder(ctx.bucket), ctx.key)
    if name.folder:
        raise invalid_argument("A key ending in '/' is a folder in RingFS and cannot hold data.", "key", name.key)
    return name


async def _upload(ctx: S3Request, name: ObjectName) -> dict:
    """The upload ``?uploadId=`` names, which must be of this key. Raises ``NoSuchUpload``."""
    upload_id = ctx.query("uploadId") or ""
    try:
        upload = await ctx.services.leader.rpc_upload(upload_id)
    except NotFound:
        raise no_such_upload(upload_id) from None
    if upload["path"] != name.path:
        raise no_such_upload(upload_id)
    return upload


def _part_number(ctx: S3Request) -> int:
    raw = ctx.query("partNumber") or ""
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_PART_NUMBER:
        raise invalid_argument(f"Part number must be an integer between 1 and {MAX_PART_NUMBER}, inclusive",
                               "partNumber", raw)
    return int(raw)


async def _part_chunk_size(ctx: S3Request) -> int:
    placement = await ctx.services.rings.get()
    return placement.streamed_chunk_size or placement.chunk_size


async def create_multipart_upload(ctx: S3Request) -> Response:
    name = _name(ctx)
    ctx.principal.check_write(name.path)
    await ctx.require_bucket()
    checksum = upload_checksum(ctx.request.headers)
    metadata = request_metadata(ctx, checksum)
    with audited(ctx.principal, "s3 create upload", name.path):
        upload = await ctx.services.leader.rpc_create_upload(name.path, metadata.content_type,
                                                             metadata.user_metadata, metadata.object_headers)
    root = xml.document("InitiateMultipartUploadResult")
    xml.add_all(root, [("Bucket", ctx.bucket), ("Key", ctx.key), ("UploadId", upload["upload_id"])])
    return ctx.xml(root, headers=upload_checksum_answer(checksum))


async def upload_part(ctx: S3Request) -> Response:
    name = _name(ctx)
    ctx.principal.check_write(name.path)
    number = _part_number(ctx)
    upload = await _upload(ctx, name)
    body = VerifiedBody(ctx.request, ctx.caller.verified, MAX_PUT_SIZE)
    metadata = ObjectMetadata()  # the part keeps its checksum, for the completion's
    try:
        result = await ctx.services.writer.write(name.path, body_with_checksum(body, metadata),
                                                 chunk_size=await _part_chunk_size(ctx), size_hint=body.declared_size,
                                                 part=(upload["upload_id"], number), metadata=metadata)
    except NotFound:  # aborted or completed while the part was on its way
        raise no_such_upload(upload["upload_id"]) from None
    headers = {"ETag": f'"{result.etag}"'}
    if body.checksum is not None:
        headers[f"x-amz-checksum-{body.checksum.algorithm}"] = body.checksum.value
    return Response(status_code=200, headers=headers)


async def upload_part_copy(ctx: S3Request) -> Response:
    """UploadPartCopy: the part is the source's bytes (``x-amz-copy-source-range``: a part of them), read
    and written again: a part has the upload's chunk size, which the source's need not have."""
    name = _name(ctx)
    ctx.principal.check_write(name.path)
    number = _part_number(ctx)
    upload = await _upload(ctx, name)
    src, src_version = copy_source(ctx)
    ctx.principal.check_read(src.path)
    reader = ctx.services.reader
    try:
        view = await reader.open(src.path, src_version)
    except NotFound:
        raise S3Error("NoSuchKey", "The specified key does not exist.", 404, Key=src.key) from None
    try:
        check_read(Conditions(ctx.request.headers, "x-amz-copy-source-"), view.info, etag_of(view.info))
    except NotModified:
        raise PreconditionFailed("a copy-source precondition failed") from None
    start, end = 0, view.size - 1
    raw_range = ctx.request.headers.get("x-amz-copy-source-range")
    if raw_range is not None:
        rng = parse_range(raw_range, view.size) if view.size else None
        if rng is None or raw_range.strip().startswith("bytes=-"):
            raise invalid_argument("The x-amz-copy-source-range value must be of the form bytes=first-last "
                                   "where first and last are the zero-based offsets of the first and last bytes "
                                   "to copy", "x-amz-copy-source-range", raw_range)
        start, end = rng
    blocks = reader.stream(view, start, end) if view.size else _nothing()
    try:
        result = await ctx.services.writer.write(name.path, blocks, chunk_size=await _part_chunk_size(ctx),
                                                 size_hint=end - start + 1, part=(upload["upload_id"], number))
    except NotFound:
        raise no_such_upload(upload["upload_id"]) from None
    root = xml.document("CopyPartResult")
    xml.add_all(root, [("LastModified", xml.iso_time(time.time())), ("ETag", f'"{result.etag}"')])
    return ctx.xml(root, headers={"x-amz-copy-source-version-id": str(view.info.version)})


async def _nothing():
    return
    yield b""


def _requested_parts(doc, checksum_element: str | None) -> tuple[list[tuple[int, str]], dict[int, str]]:
    """The ``(part number, ETag)`` of each Part of a Complete document, and the checksums it names for
    them (the ``checksum_element`` of each, e.g. ``ChecksumCRC32``) by part number."""
    parts, checksums = [], {}
    for part in xml.children(doc, "Part"):
        number, etag = xml.child_text(part, "PartNumber"), xml.child_text(part, "ETag")
        if number is None or etag is None or not number.strip().isdigit():
            raise xml.malformed("every Part needs a PartNumber and an ETag")
        parts.append((int(number.strip()), etag.strip().strip('"')))
        named = xml.child_text(part, checksum_element) if checksum_element else None
        if named is not None:
            checksums[parts[-1][0]] = named
    if not parts:
        raise xml.malformed("a CompleteMultipartUpload document lists at least one Part")
    if any(b[0] <= a[0] for a, b in zip(parts, parts[1:])):
        raise S3Error("InvalidPartOrder", "The list of parts was not in ascending order. The parts list must "
                      "be specified in order by part number.", 400)
    return parts, checksums


def _manifest(path: str, size: int, chunk_size: int, replication: int, digests: bytes) -> Manifest:
    info = VersionInfo(path=path, version=1, size=size, sha256="0" * 64, chunks=len(digests) // 32,
                       chunk_size=chunk_size, replication=replication, state="committed", created_at=time.time())
    return Manifest(info, digests)


async def complete_multipart_upload(ctx: S3Request) -> Response:
    name = _name(ctx)
    ctx.principal.check_write(name.path)
    doc = xml.parse(await read_small(ctx.request, ctx.caller.verified, xml.MAX_XML_BODY), "CompleteMultipartUpload")
    try:
        upload = await _upload(ctx, name)
    except S3Error as exc:
        parts, _ = _requested_parts(doc, None)
        done = await _already_completed(ctx, name, parts) if exc.code == "NoSuchUpload" else None
        if done is None:
            raise
        return _completed(ctx, done)
    parts, named_checksums = _requested_parts(doc, checksum_element(upload.get("object_headers")))
    upload_id = upload["upload_id"]
    inm = ctx.request.headers.get("if-none-match")
    if inm is not None and inm.strip() != "*":
        raise S3Error("NotImplemented", "CompleteMultipartUpload takes only 'If-None-Match: *'.", 501)
    if_match = ctx.request.headers.get("if-match")
    leader_if_match = None if if_match is None else await live_etag_condition(ctx, name.path, if_match)
    leader = ctx.services.leader
    plan = await leader.rpc_assemble_upload(upload_id, parts)
    if plan.get("problem"):
        problem = plan["problem"]
        raise S3Error(problem["code"], problem["message"], 400)
    checksum = CompletedChecksum(upload.get("object_headers"), plan["parts"])
    for number, value in named_checksums.items():
        checksum.check_part(number, value)
    kept = split_checksum(upload.get("object_headers"))[0]
    reader = ctx.services.reader
    pieces = [(p, base64.b64decode(p["digests"])) for p in plan["parts"]]
    with audited(ctx.principal, "s3 complete upload", name.path) as details:
        if plan["aligned"]:
            whole = _manifest(name.path, plan["size"], plan["chunk_size"], plan["replication"],
                              b"".join(d for _, d in pieces))
            sha = hashlib.sha256()
            async for block in reader.stream(whole) if whole.size else _nothing():
                sha.update(block)
                checksum.update(block)
            try:
                info = await leader.rpc_complete_upload(upload_id, parts, sha256=sha.hexdigest(),
                                                        digests_sha256=plan["digests_sha256"],
                                                        create_only=inm is not None, if_match=leader_if_match,
                                                        object_headers=encoded({**kept, **checksum.entries()}))
            except NotFound:  # aborted, expired, or completed by another request meanwhile (a retry)
                done = await _already_completed(ctx, name, parts)
                if done is None:
                    raise no_such_upload(upload_id) from None
                return _completed(ctx, done)
            except BadRequest as exc:  # the parts changed into an invalid list since assemble
                code, colon, message = exc.message.partition(": ")
                if colon and code in PART_PROBLEMS:
                    raise S3Error(code, message, 400) from None
                raise
        else:  # odd part sizes: the one case that writes the data again (see the module docstring)
            metadata = ObjectMetadata(upload.get("content_type"), _json(upload.get("user_metadata")), plan["etag"])

            async def parts_data():
                for part, digests in pieces:
                    view = _manifest(name.path, part["size"], part["chunk_size"], plan["replication"], digests)
                    if view.size:
                        async for block in reader.stream(view):
                            checksum.update(block)
                            yield block
                metadata.object_headers = encoded({**kept, **checksum.entries()})  # read at the prepare

            result = await ctx.services.writer.write(
                name.path, parts_data(), size_hint=plan["size"], create_only=inm is not None,
                if_match=leader_if_match, metadata=metadata)
            try:
                await leader.rpc_abort_upload(upload_id)  # the parts were copied: drop them
            except NotFound:
                pass  # another request aborted it meanwhile; this write stands
            info = await leader.rpc_stat(name.path, result.version)
        details["version"] = info.version
    return _completed(ctx, info)


def _completed(ctx: S3Request, info: VersionInfo) -> Response:
    root = xml.document("CompleteMultipartUploadResult")
    xml.add_all(root, [("Location", f"/{ctx.bucket}/{ctx.key}"), ("Bucket", ctx.bucket), ("Key", ctx.key),
                       ("ETag", f'"{etag_of(info)}"')])
    stored = checksum_of(info.object_headers)
    if stored is not None:
        xml.add_all(root, [(XML_NAMES[stored[0]], stored[1]),
                           ("ChecksumType", (info.object_headers or {}).get(CHECKSUM_TYPE_HEADER))])
    return ctx.xml(root, headers={"x-amz-version-id": str(info.version)})


async def _already_completed(ctx: S3Request, name: ObjectName, parts: list[tuple[int, str]]) -> VersionInfo | None:
    """The live version of the key when it is what completing these parts made: a client that retries a
    completion (its answer was lost) is answered as the first time, as S3 does."""
    try:
        expected = multipart_etag([tag for _, tag in parts])
        current = await ctx.services.leader.rpc_stat(name.path)
    except (ValueError, NotFound):
        return None
    return current if current.etag == expected else None


def _json(metadata: dict | str | None) -> str | None:
    if metadata is None or isinstance(metadata, str):
        return metadata
    return canonical_user_metadata(metadata)


async def abort_multipart_upload(ctx: S3Request) -> Response:
    name = _name(ctx)
    ctx.principal.check_write(name.path)
    upload = await _upload(ctx, name)
    with audited(ctx.principal, "s3 abort upload", name.path):
        try:
            await ctx.services.leader.rpc_abort_upload(upload["upload_id"])
        except NotFound:
            raise no_such_upload(upload["upload_id"]) from None
    return Response(status_code=204)


def _limit(ctx: S3Request, name: str) -> int:
    raw = ctx.query(name)
    if raw is None:
        return MAX_LISTED
    if not raw.isascii() or not raw.isdigit():
        raise invalid_argument(f"Provided {name} not an integer or within integer range", name, raw)
    return max(1, min(int(raw), MAX_LISTED))


async def list_parts(ctx: S3Request) -> Response:
    name = _name(ctx)
    ctx.principal.check_read(name.path)
    upload = await _upload(ctx, name)
    marker_raw = ctx.query("part-number-marker") or "0"
    if not marker_raw.isdigit():
        raise invalid_argument("Invalid part-number-marker", "part-number-marker", marker_raw)
    limit = _limit(ctx, "max-parts")
    listing = await ctx.services.leader.rpc_list_parts(upload["upload_id"], int(marker_raw), limit)
    root = xml.document("ListPartsResult")
    xml.add_all(root, [("Bucket", ctx.bucket), ("Key", ctx.key), ("UploadId", upload["upload_id"]),
                       ("PartNumberMarker", int(marker_raw)),
                       ("NextPartNumberMarker", listing["parts"][-1]["part_number"] if listing["parts"] else None),
                       ("MaxParts", limit), ("IsTruncated", bool(listing.get("truncated")))])
    for part in listing["parts"]:
        xml.add_all(xml.add(root, "Part"), [("PartNumber", part["part_number"]),
                                            ("LastModified", xml.iso_time(part["committed_at"])),
                                            ("ETag", f'"{part["etag"]}"'), ("Size", part["size"])])
    owner(root, ctx, "Initiator")
    owner(root, ctx)
    xml.add(root, "StorageClass", "STANDARD")
    return ctx.xml(root)


async def list_multipart_uploads(ctx: S3Request) -> Response:
    folder = bucket_folder(ctx.bucket)
    if not ctx.principal.reads_anything_under(folder):
        raise S3Error("AccessDenied", "Access Denied", 403)
    await ctx.require_bucket()
    prefix = ctx.query("prefix") or ""
    key_marker = ctx.query("key-marker") or ""
    upload_marker = ctx.query("upload-id-marker") or ""
    limit = _limit(ctx, "max-uploads")
    base = folder + "/"
    listing = await ctx.services.leader.rpc_list_uploads(base + prefix, base + key_marker if key_marker else None,
                                                         upload_marker or None, limit)
    uploads = [u for u in listing["uploads"] if ctx.principal.may_read(u["path"])]
    root = xml.document("ListMultipartUploadsResult")
    last = listing["uploads"][-1] if listing["uploads"] else None
    xml.add_all(root, [("Bucket", ctx.bucket), ("KeyMarker", key_marker), ("UploadIdMarker", upload_marker),
                       ("NextKeyMarker", key_of(folder, last["path"]) if last else None),
                       ("NextUploadIdMarker", last["upload_id"] if last else None),
                       ("Prefix", prefix), ("MaxUploads", limit), ("IsTruncated", bool(listing.get("truncated")))])
    for upload in uploads:
        entry = xml.add(root, "Upload")
        xml.add_all(entry, [("Key", key_of(folder, upload["path"])), ("UploadId", upload["upload_id"])])
        owner(entry, ctx, "Initiator")
        owner(entry, ctx)
        xml.add_all(entry, [("StorageClass", "STANDARD"), ("Initiated", xml.iso_time(upload["created_at"]))])
    return ctx.xml(root)
