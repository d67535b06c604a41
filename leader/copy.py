"""Server-side copy (S3 CopyObject, ``POST /copy``): a new version of ``dst`` that shares the chunk list of
a committed version of ``src``. No chunk data moves: chunks are content-addressed (placed by their
SHA-256 on the ring, ``shared/ring.py``), so the new version's chunks are where the source's already are.

A copy is a write whose chunks are already durable, so it goes through the leader's half of the
two-phase commit like any write (``leader/txns.py``), both phases run here back to back:

1. **prepare**, in one transaction: the source version is read and share-locked (PostgreSQL ``FOR
   SHARE``; SQLite's write lock serializes it anyway), and a pending version of ``dst`` with the source's
   ``chunk_digests``, ``chunk_size``, ``size``, ``sha256``, ``etag`` and ``replication`` is recorded, after
   the prepare's checks (:func:`leader.txns.prepare_in`);
2. **commit** (:func:`leader.txns.commit`): the same conflict rules as any commit of ``dst``, in its own
   transaction (409 file/folder, 412 create-only / ``if_match``), which drops the pending version when it
   refuses.

Why not one transaction: on PostgreSQL a commit serializes with the commits its file-or-folder decision
depends on by locking their *pending rows*, which must be visible to it; a version inserted and
committed in one transaction has no pending row anyone can see, so a concurrent commit of a file below
``dst`` could miss it. Only step 2 makes the copy visible, so it is atomic all the same; a leader that
dies between the steps leaves a pending version that the sweeper drops after ``PENDING_TTL``, as for an
interrupted upload.

Why the shared chunks are never collected (docs/failure-handling.md, "Garbage collection"): a chunk
server deletes a chunk only after the leader, asked after the GC round began, answers that no pending,
committed or deleted version references it (``leader/gc.py``, computed from SQL at the time of the
request). The source version references the chunks while step 1 runs, and step 1 holds it locked, so it
cannot be tombstoned or purged before step 1 commits; from then on the new pending version references
them, and after step 2 the new committed version (or, if step 2 refused, the source again). At every
instant some row references them, so every GC answer calls them referenced.
"""

from __future__ import annotations

import uuid

import orjson

from leader import txns
from leader import version_sql as sql
from leader.new_version import NewVersion, checked_user_metadata
from leader.store import Store
from shared.errors import NotFound
from shared.paths import normalize_path
from shared.protocol.models import CopyRequest, VersionInfo
from shared.protocol.rules import canonical_user_metadata, parse_object_headers, split_checksum

# The source version, share-locked until the copy's prepare commits (see the module docstring).
SOURCE_LATEST = sql.LATEST.with_for_update(read=True)
SOURCE_EXACT = sql.EXACT.with_for_update(read=True)


async def copy(store: Store, req: CopyRequest) -> VersionInfo:
    """Copy ``req.src`` (its latest committed version, or ``req.src_version``) to ``req.dst``; the
    :class:`VersionInfo` of the new committed version of ``dst``. With ``metadata="copy"`` it keeps the
    source's ``content_type``, ``user_metadata`` and ``object_headers``, with ``"replace"`` it gets
    ``req``'s, but for the checksum entries of ``object_headers``: they describe the bytes, which are the
    source's, so they are the source's whatever the directive. A copy onto the source's own path makes a
    new version of it.

    Raises :class:`BadRequest` (400: a path, ``user_metadata``), :class:`NotFound` (404: no such
    committed source version, or it is deleted), :class:`Conflict` (409: ``dst`` would be a file and a
    folder), :class:`PreconditionFailed` (412: ``create_only`` and ``dst`` exists, or ``if_match`` does
    not match ``dst``'s live version), :class:`Unavailable` (503)."""
    src, dst = normalize_path(req.src), normalize_path(req.dst)
    replace = req.metadata == "replace"
    user_metadata = checked_user_metadata(req.user_metadata) if replace else None
    given_headers = parse_object_headers(req.object_headers) if replace and req.object_headers is not None else {}
    txn_id = f"copy-{uuid.uuid4().hex}"

    async def from_source(conn) -> NewVersion:
        if req.src_version is None:
            row = (await conn.execute(SOURCE_LATEST, {"path": src})).first()
        else:
            row = (await conn.execute(SOURCE_EXACT, {"path": src, "version": req.src_version})).first()
        if row is None:
            what = repr(src) if req.src_version is None else f"version {req.src_version} of {src!r}"
            raise NotFound(f"no such file to copy: {what}")
        return NewVersion(
            txn_id=txn_id, path=dst, size=row.size, sha256=row.sha256, chunk_size=row.chunk_size,
            replication=row.replication, create_only=req.create_only, digests=bytes(row.chunk_digests),
            if_match=req.if_match, etag=row.etag, content_type=req.content_type if replace else row.content_type,
            user_metadata=user_metadata if replace else row.user_metadata,
            object_headers=_replaced_headers(row.object_headers, given_headers) if replace else row.object_headers)

    await txns.prepare_derived(store, from_source, repr(dst))
    return await txns.commit(store, txn_id)


def _replaced_headers(source: str | None, given: dict[str, str]) -> str | None:
    """A replacing copy's object headers: ``given`` without checksum entries, plus the source's."""
    merged = {**split_checksum(given)[0], **split_checksum(orjson.loads(source) if source else None)[1]}
    return canonical_user_metadata(merged) if merged else None
