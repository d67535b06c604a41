"""S3 multipart uploads, the leader's half: create, look up, list, abort, assemble and complete an upload,
and the expiry of unfinished ones (``MULTIPART_TTL``). The user app's half is ``user_app/s3/multipart.py``.

An upload is a row of ``multipart_uploads``; each of its parts is written by the user app as a 2PC write of
its own, which the leader records as a ``part`` row of ``file_versions`` at a path no file can have
(``leader/parts.py``, ``leader/txns.py``). Completing an upload makes a version of its path whose chunk
list is the parts' chunk lists joined (``leader/assembly.py``): no chunk is written again.

Completion, like a copy (``leader/copy.py``), is a write whose chunks are already durable, run here in the
two phases of any write:

1. **prepare**, in one transaction: the upload's row share-locked (so no abort can drop its parts
   meanwhile), the named parts read and checked again exactly as ``assemble`` checks them (and against
   the ``digests_sha256`` the user app's assemble answered: the SHA-256 it read covers those parts), and a
   pending version of the upload's path recorded from the plan (:func:`leader.txns.prepare_in`);
2. **commit** (:func:`leader.txns.commit_with`): the normal commit of that path, with every rule of a
   commit (409 file/folder, 412 create-only / ``if_match``), and, in the same transaction once those
   rules allow it, the upload's row and every row of its parts deleted.

So the parts stay referenced until the new version is committed, and from then on the new version
references the chunks it uses (parts not named become unreferenced, and GC collects them); and an upload
completes at most once: the commit that completes it deletes it, and a second completion finds it gone
(404) and drops its own pending version. A leader that dies between the phases leaves a pending version
that the sweeper drops after ``PENDING_TTL`` and the upload as it was: the client can complete it again.

Upload ids are :func:`new_upload_id`: they sort as the uploads' creation times, so S3's
``upload-id-marker`` ("uploads with an upload ID lexicographically greater") continues a listing ordered by
``(path, created_at, upload_id)`` where it stopped.
"""

from __future__ import annotations

import functools
import secrets
import time
import uuid

import orjson
from sqlalchemy import Integer, and_, bindparam, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from leader import assembly, txns
from leader.new_version import NewVersion, checked_object_headers, checked_user_metadata
from leader.parts import (
    LOCK_UPLOAD, UPLOAD_ROW, UPLOADS, drop_upload, no_such_upload, part_path, part_range, parse_part_path,
)
from leader.scan import successor
from leader.store import WRITE_RETRIES, Store
from leader.version_sql import FILE_VERSIONS, PART, unindexed
from shared.errors import BadRequest, Conflict, RingFSError, Unavailable
from shared.paths import normalize_path
from shared.protocol.models import (
    CompleteRequest, NewUpload, PartInfo, PartListing, UploadInfo, UploadListing, UploadProblem, UploadSummary,
    VersionInfo,
)
from shared.protocol.rules import MAX_PART_NUMBER, MAX_SCAN_LIMIT, UPLOAD_ID_RE

_U = UPLOADS.c
_C = FILE_VERSIONS.c
_LATER = FILE_VERSIONS.alias("later")
# Part paths per statement when the named parts are read (bounds an IN list's bind parameters).
_PATHS_PER_STATEMENT = 500
# Uploads the expiry drops per transaction, so one sweep never holds the write lock for long.
EXPIRY_BATCH = 100


def new_upload_id() -> tuple[str, float]:
    """``(upload_id, created_at)`` of a new upload: 16 hex digits of the creation time in microseconds, then
    32 random hex digits (128 bits: not guessable). ``created_at`` (UNIX seconds) is that very time, so
    upload ids sort as ``(created_at, upload_id)`` do, in SQL under any collation as in Python."""
    micros = time.time_ns() // 1000
    return f"{micros:016x}{secrets.token_hex(16)}", micros / 1e6


def _known_form(upload_id: str) -> bool:
    """Whether ``upload_id`` could name an upload at all; any other is answered 404 without SQL."""
    return UPLOAD_ID_RE.fullmatch(upload_id) is not None


# ---------------------------------------------------------------- create, look up, abort


async def create_upload(store: Store, req: NewUpload) -> UploadSummary:
    """A new upload of ``req.path``. Raises :class:`BadRequest` (400) for a bad path or ``user_metadata``
    (``Content-Type`` is checked by the model), :class:`Unavailable` (503) when SQL fails."""
    path = normalize_path(req.path)
    metadata, headers = checked_user_metadata(req.user_metadata), checked_object_headers(req.object_headers)
    for _ in range(WRITE_RETRIES):
        upload_id, created_at = new_upload_id()
        try:
            async with store.write_conn() as conn:
                await conn.execute(UPLOADS.insert(), {
                    "upload_id": upload_id, "path": path, "created_at": created_at,
                    "content_type": req.content_type, "user_metadata": metadata, "object_headers": headers})
        except IntegrityError:  # 128 random bits collided: never in practice, but not a 500 either
            continue
        return UploadSummary(upload_id=upload_id, path=path, created_at=created_at)
    raise Unavailable("could not make a unique upload id")


async def get_upload(store: Store, upload_id: str) -> UploadInfo:
    """Upload ``upload_id``. Raises :class:`NotFound` (404) when there is none (never made, or aborted,
    expired or completed)."""
    if not _known_form(upload_id):
        raise no_such_upload(upload_id)
    async with store.read_conn() as conn:
        row = (await conn.execute(UPLOAD_ROW, {"upload_id": upload_id})).first()
    if row is None:
        raise no_such_upload(upload_id)
    return UploadInfo(upload_id=row.upload_id, path=row.path, created_at=row.created_at,
                      content_type=row.content_type,
                      user_metadata=None if row.user_metadata is None else orjson.loads(row.user_metadata),
                      object_headers=None if row.object_headers is None else orjson.loads(row.object_headers))


async def abort_upload(store: Store, upload_id: str) -> None:
    """Delete upload ``upload_id`` and every row of its parts, pending or committed, in one transaction; a
    pending part's commit then answers 404. Raises :class:`NotFound` (404) when there is no such upload."""
    if not _known_form(upload_id):
        raise no_such_upload(upload_id)
    async with store.write_conn() as conn:
        if not await drop_upload(conn, upload_id):
            raise no_such_upload(upload_id)


# The oldest uploads created before ``cutoff``, at most ``k`` (the creation-time index).
_EXPIRED = (select(_U.upload_id).where(_U.created_at < bindparam("cutoff", type_=_U.created_at.type))
            .order_by(_U.created_at).limit(bindparam("k", type_=Integer)))


async def expire_uploads(store: Store, ttl: float) -> int:
    """Abort every upload created more than ``ttl`` seconds ago, :data:`EXPIRY_BATCH` per transaction;
    return how many."""
    cutoff = time.time() - ttl
    dropped = 0
    while True:
        async with store.write_conn() as conn:
            ids = list((await conn.execute(_EXPIRED, {"cutoff": cutoff, "k": EXPIRY_BATCH})).scalars())
            for upload_id in ids:
                dropped += await drop_upload(conn, upload_id)
        if len(ids) < EXPIRY_BATCH:
            return dropped


# ---------------------------------------------------------------- listings


@functools.lru_cache(maxsize=8)
def _uploads_statement(bounded: bool, marker: str | None):
    """Uploads with ``lo <= path`` (``< hi`` if ``bounded``) after the markers (``marker``: None, ``"key"``
    for ``path > key``, ``"key+id"`` for ``path > key OR (path = key AND upload_id > id)``), in ``(path,
    created_at, upload_id)`` order, at most ``k``: a range walk of the path index."""
    path = bindparam("lo", type_=_U.path.type)
    q = select(_U.upload_id, _U.path, _U.created_at).where(_U.path >= path)
    if bounded:
        q = q.where(_U.path < bindparam("hi", type_=_U.path.type))
    key = bindparam("key", type_=_U.path.type)
    if marker == "key":
        q = q.where(_U.path > key)
    elif marker == "key+id":
        q = q.where(or_(_U.path > key, and_(_U.path == key, _U.upload_id > bindparam("id", type_=_U.upload_id.type))))
    return q.order_by(_U.path, _U.created_at, _U.upload_id).limit(bindparam("k", type_=Integer))


async def list_uploads(store: Store, prefix: str = "", key_marker: str | None = None,
                       upload_id_marker: str | None = None, limit: int = MAX_SCAN_LIMIT) -> UploadListing:
    """The uploads whose path starts with ``prefix`` (a plain string prefix), in ``(path, created_at,
    upload_id)`` order, at most ``limit`` (1..1000), after the markers as S3's ListMultipartUploads defines
    them: with ``key_marker`` alone, paths after it; with both, also the uploads of path ``key_marker``
    whose id sorts after ``upload_id_marker`` (which, ids sorting as creation times, are those created
    after it); ``upload_id_marker`` without ``key_marker`` is ignored. The bounds must have been checked
    (``leader.scan.checked_bound``). Raises :class:`BadRequest` for a ``limit`` out of range."""
    if not 1 <= limit <= MAX_SCAN_LIMIT:
        raise BadRequest(f"limit must be from 1 to {MAX_SCAN_LIMIT}, got {limit}")
    hi = successor(prefix) if prefix else None
    marker = None if key_marker is None else "key" if upload_id_marker is None else "key+id"
    params = {"lo": prefix, "hi": hi, "key": key_marker, "id": upload_id_marker, "k": limit + 1}
    async with store.read_conn() as conn:
        rows = (await conn.execute(_uploads_statement(hi is not None, marker), params)).all()
    uploads = [UploadSummary(upload_id=r.upload_id, path=r.path, created_at=r.created_at) for r in rows]
    return UploadListing(uploads=uploads[:limit], truncated=len(uploads) > limit)


# The latest committed upload of each part path in a range, in part order, at most ``k``: a walk of the
# path index in order (``unindexed`` keeps SQLite off the state indexes and a sort of the whole range).
_PARTS_IN_RANGE = (
    select(_C.path, _C.size, _C.etag, _C.committed_at)
    .where(_C.path >= bindparam("lo", type_=_C.path.type), _C.path < bindparam("hi", type_=_C.path.type),
           unindexed(_C.state) == PART,
           _C.version == select(func.max(_LATER.c.version))
           .where(_LATER.c.path == _C.path, _LATER.c.state == PART).scalar_subquery())
    .order_by(_C.path).limit(bindparam("k", type_=Integer))
)


async def list_parts(store: Store, upload_id: str, part_number_marker: int = 0,
                     limit: int = MAX_SCAN_LIMIT) -> PartListing:
    """The parts of ``upload_id`` numbered above ``part_number_marker``, ascending, at most ``limit``
    (1..1000): each part's latest committed upload. Raises :class:`NotFound` (404) for an unknown upload,
    :class:`BadRequest` for a ``limit`` out of range."""
    if not 1 <= limit <= MAX_SCAN_LIMIT:
        raise BadRequest(f"limit must be from 1 to {MAX_SCAN_LIMIT}, got {limit}")
    if not _known_form(upload_id):
        raise no_such_upload(upload_id)
    async with store.read_conn() as conn:
        if (await conn.execute(UPLOAD_ROW, {"upload_id": upload_id})).first() is None:
            raise no_such_upload(upload_id)
        if part_number_marker >= MAX_PART_NUMBER:
            return PartListing(parts=[], truncated=False)
        _, hi = part_range(upload_id)
        rows = (await conn.execute(_PARTS_IN_RANGE, {
            "lo": part_path(upload_id, max(part_number_marker, 0) + 1), "hi": hi, "k": limit + 1})).all()
    parts = [PartInfo(part_number=parse_part_path(r.path)[1], size=r.size, etag=r.etag or "",
                      committed_at=r.committed_at) for r in rows]
    return PartListing(parts=parts[:limit], truncated=len(parts) > limit)


# ---------------------------------------------------------------- assemble and complete

# The latest committed upload of each of the part paths ``paths``, with its chunk list.
_PARTS_NAMED = (
    select(_C.path, _C.size, _C.chunk_size, _C.replication, _C.etag, _C.chunk_digests, _C.object_headers)
    .where(_C.path.in_(bindparam("paths", expanding=True)), _C.state == PART,
           _C.version == select(func.max(_LATER.c.version))
           .where(_LATER.c.path == _C.path, _LATER.c.state == PART).scalar_subquery())
)


async def _plan(conn: AsyncConnection, upload_id: str, requested: list[tuple[int, str]]
                ) -> assembly.Plan | UploadProblem:
    """:func:`leader.assembly.plan` of ``requested`` over the parts of ``upload_id`` as they are now."""
    paths = [part_path(upload_id, n) for n in sorted(set(assembly.requested_numbers(requested)))]
    stored: dict[int, assembly.StoredPart] = {}
    for start in range(0, len(paths), _PATHS_PER_STATEMENT):
        for r in await conn.execute(_PARTS_NAMED, {"paths": paths[start:start + _PATHS_PER_STATEMENT]}):
            number = parse_part_path(r.path)[1]
            stored[number] = assembly.StoredPart(part_number=number, size=r.size, chunk_size=r.chunk_size,
                                                 replication=r.replication, etag=r.etag or "",
                                                 digests=bytes(r.chunk_digests), object_headers=r.object_headers)
    return assembly.plan(requested, stored)


async def assemble(store: Store, upload_id: str, requested: list[tuple[int, str]]) -> dict:
    """What completing ``upload_id`` with ``requested`` (``[(part_number, etag)]``) would make, read-only:
    ``{"problem": {"code", "message"}}`` when S3 would refuse the request
    (:func:`leader.assembly.plan`), else the :class:`AssemblyPlan` as a dict (``"problem": None``). Raises
    :class:`NotFound` (404) for an unknown upload."""
    if not _known_form(upload_id):
        raise no_such_upload(upload_id)
    async with store.read_conn() as conn:
        if (await conn.execute(UPLOAD_ROW, {"upload_id": upload_id})).first() is None:
            raise no_such_upload(upload_id)
        outcome = await _plan(conn, upload_id, requested)
    if isinstance(outcome, UploadProblem):
        return {"problem": outcome.model_dump()}
    return outcome.wire().model_dump()


async def complete(store: Store, upload_id: str, req: CompleteRequest) -> VersionInfo:
    """Complete ``upload_id`` with ``req.parts``: the :class:`VersionInfo` of the new committed version of
    the upload's path, whose chunk list is the parts' joined, with ``req.sha256``, the plan's multipart
    ETag and the upload's ``content_type`` and ``user_metadata``, and ``req.object_headers`` (else the
    upload's); the upload and all its parts are gone
    (see the module docstring).

    Raises :class:`NotFound` (404: no such upload, or it was aborted, expired or completed meanwhile),
    :class:`BadRequest` (400: what ``assemble`` answers as a problem, its S3 code first in the message;
    or parts that are not aligned, which only a copy can join), :class:`Conflict` (409: the parts
    changed since the assemble that gave ``req.digests_sha256``, or the path would be a file and a
    folder), :class:`PreconditionFailed` (412: ``create_only`` and the path exists, or ``if_match`` does
    not match its live version), :class:`Unavailable` (503)."""
    if not _known_form(upload_id):
        raise no_such_upload(upload_id)
    txn_id = f"mpu-{uuid.uuid4().hex}"
    object_headers = checked_object_headers(req.object_headers)

    async def from_parts(conn) -> NewVersion:
        upload = (await conn.execute(LOCK_UPLOAD, {"upload_id": upload_id})).first()
        if upload is None:
            raise no_such_upload(upload_id)
        outcome = await _plan(conn, upload_id, req.parts)
        if isinstance(outcome, UploadProblem):
            raise BadRequest(f"{outcome.code}: {outcome.message}")
        if outcome.digests_sha256 != req.digests_sha256:
            raise Conflict("the parts changed since assemble; retry")
        if not outcome.aligned:
            raise BadRequest("the parts are not aligned (not one chunk size, or a part but the last is "
                             "not a whole number of chunks): their chunk lists cannot be joined; write "
                             "the object by copying the parts instead")
        return NewVersion(
            txn_id=txn_id, path=upload.path, size=outcome.size, sha256=req.sha256,
            chunk_size=outcome.chunk_size, replication=outcome.replication, create_only=req.create_only,
            digests=outcome.digests, if_match=req.if_match, etag=outcome.etag,
            content_type=upload.content_type, user_metadata=upload.user_metadata,
            object_headers=upload.object_headers if req.object_headers is None else object_headers)

    await txns.prepare_derived(store, from_parts, f"the path of upload {upload_id!r}")
    return await txns.commit_with(store, txn_id, functools.partial(_drop_completed, upload_id=upload_id))


async def _drop_completed(conn: AsyncConnection, upload_id: str) -> RingFSError | None:
    """In the completing commit's transaction: drop the upload and its parts, or refuse the commit (404)
    when the upload is gone already (aborted, expired or completed by a concurrent request)."""
    if await drop_upload(conn, upload_id):
        return None
    return no_such_upload(upload_id, meanwhile=True)
