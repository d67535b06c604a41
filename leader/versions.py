"""File versions: the two-phase-commit name mapping (prepare / commit / abort), lookups and the sweep.

The reference design's write: phase 2 records the version as ``pending`` with its ordered chunk list,
phase 4 commits it (only then visible); pending versions never committed are swept after
``PENDING_TTL``. Version numbers are ``1 + max(version)`` over every row of the path (GFS §4.5 keeps a
version number per chunk; here per file). Two writers racing for the same number both succeed: the loser
hits the ``(path, version)`` unique constraint and retries in a fresh transaction.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from leader.models import FileVersion as FV
from leader.store import WRITE_RETRIES, Store
from shared.errors import BadRequest, Conflict, NotFound, PreconditionFailed, Unavailable
from shared.protocol import DIGEST_SIZE

PENDING, COMMITTED, DELETED = "pending", "committed", "deleted"
TXN_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
# Most copies a version may ask for (matches REPLICATION_FACTOR's bound in shared/config.py).
MAX_REPLICATION = 16


@dataclass(frozen=True)
class NewVersion:
    """What ``POST /txns`` carries: the version's metadata and ``digests`` (packed 32-byte digests)."""

    txn_id: str
    path: str
    size: int
    sha256: str
    chunk_size: int
    replication: int
    create_only: bool
    digests: bytes


def validate_txn_id(txn_id: str) -> str:
    if not TXN_ID_RE.match(txn_id or ""):
        raise BadRequest(f"txn_id must be 1-64 characters of [A-Za-z0-9_-], got {txn_id[:80]!r}")
    return txn_id


def expected_chunks(size: int, chunk_size: int) -> int:
    """Chunks of a ``size``-byte file cut into ``chunk_size``-byte chunks (0 for an empty file)."""
    return -(-size // chunk_size)  # integer ceil: exact for any size


def validate_new_version(nv: NewVersion, min_chunk_size: int, max_chunk_size: int) -> None:
    """Raise :class:`BadRequest` naming the first problem of ``nv`` (path is already normalized)."""
    validate_txn_id(nv.txn_id)
    if nv.size < 0:
        raise BadRequest(f"size must be >= 0, got {nv.size}")
    if not (min_chunk_size <= nv.chunk_size <= max_chunk_size):
        raise BadRequest(f"chunk_size {nv.chunk_size} is outside [{min_chunk_size}, {max_chunk_size}]")
    if not (1 <= nv.replication <= MAX_REPLICATION):
        raise BadRequest(f"replication {nv.replication} is outside [1, {MAX_REPLICATION}]")
    if not SHA256_RE.match(nv.sha256):
        raise BadRequest(f"sha256 must be 64 lowercase hex characters, got {nv.sha256[:80]!r}")
    want = DIGEST_SIZE * expected_chunks(nv.size, nv.chunk_size)
    if len(nv.digests) != want:
        raise BadRequest(
            f"digest body is {len(nv.digests)} bytes; a {nv.size}-byte file in {nv.chunk_size}-byte chunks "
            f"needs {want} bytes ({want // DIGEST_SIZE} digests of {DIGEST_SIZE} bytes)"
        )


def version_info(row: FV) -> dict:
    """A row as a :class:`shared.protocol.VersionInfo` dict (without the chunk list)."""
    return {
        "path": row.path,
        "version": row.version,
        "size": row.size,
        "sha256": row.sha256,
        "chunks": row.chunk_count,
        "chunk_size": row.chunk_size,
        "replication": row.replication,
        "state": row.state,
        "created_at": row.created_at,
        "committed_at": row.committed_at,
        "deleted_at": row.deleted_at,
    }


async def live_version_exists(session: AsyncSession, path: str, exclude_id: int | None = None) -> bool:
    q = select(FV.id).where(FV.path == path, FV.state == COMMITTED)
    if exclude_id is not None:
        q = q.where(FV.id != exclude_id)
    return (await session.execute(q.limit(1))).first() is not None


async def prepare(store: Store, nv: NewVersion) -> FV:
    """Record ``nv`` as a pending version with the next version number; return the row.

    Raises :class:`Conflict` (409) when ``txn_id`` was used before, :class:`PreconditionFailed` (412)
    for ``create_only`` when a live version exists, :class:`Unavailable` after ``WRITE_RETRIES`` lost
    races.
    """
    for attempt in range(WRITE_RETRIES):
        try:
            async with store.write() as session:
                if nv.create_only and await live_version_exists(session, nv.path):
                    raise PreconditionFailed(f"{nv.path!r} already exists (create-only write)")
                top = (await session.execute(select(func.max(FV.version)).where(FV.path == nv.path))).scalar()
                row = FV(
                    path=nv.path, version=(top or 0) + 1, size=nv.size, sha256=nv.sha256,
                    chunk_size=nv.chunk_size, replication=nv.replication,
                    chunk_count=len(nv.digests) // DIGEST_SIZE, chunk_digests=nv.digests, state=PENDING,
                    txn_id=nv.txn_id, create_only=nv.create_only, created_at=time.time(),
                )
                session.add(row)
            return row
        except IntegrityError:
            async with store.read() as session:
                taken = (await session.execute(select(FV.id).where(FV.txn_id == nv.txn_id))).first()
            if taken is not None:
                raise Conflict(f"txn_id {nv.txn_id!r} was already used") from None
            await asyncio.sleep(random.uniform(0, 0.002 * (attempt + 1)))  # de-synchronize racers
    raise Unavailable(f"could not assign a version to {nv.path!r}: too many concurrent writers")


async def commit(store: Store, txn_id: str) -> dict:
    """Make the pending version of ``txn_id`` visible (phase 4); return its VersionInfo dict.

    Idempotent: a committed (or since deleted) txn returns its info again. Raises :class:`NotFound` for
    an unknown or swept txn and :class:`PreconditionFailed` when a create-only write lost the race to
    another version of its path (this txn is then aborted).
    """
    validate_txn_id(txn_id)
    lost_race = False
    async with store.write() as session:
        head = (await session.execute(
            select(FV.path, FV.create_only, FV.state).where(FV.txn_id == txn_id))).first()
        if head is None:
            raise NotFound(f"transaction {txn_id!r} is unknown or expired")
        if head.create_only and head.state == PENDING:
            # Lock every row of the path in id order, so concurrent create-only commits of one path
            # serialize on PostgreSQL (READ COMMITTED re-reads the winner's committed row); on SQLite
            # the store's write lock already serializes them.
            await session.execute(select(FV.id).where(FV.path == head.path).order_by(FV.id).with_for_update())
        row = (await session.execute(
            select(FV).where(FV.txn_id == txn_id).with_for_update()
            .execution_options(populate_existing=True))).scalar_one_or_none()
        if row is None:
            raise NotFound(f"transaction {txn_id!r} is unknown or expired")
        if row.state != PENDING:
            return version_info(row)
        if row.create_only and await live_version_exists(session, row.path, exclude_id=row.id):
            await session.delete(row)
            lost_race = True
        else:
            row.state = COMMITTED
            row.committed_at = time.time()
    if lost_race:
        raise PreconditionFailed(f"{head.path!r} was created by another writer first; transaction aborted")
    return version_info(row)


async def abort(store: Store, txn_id: str) -> None:
    """Drop the pending version of ``txn_id``. Raises :class:`NotFound` (unknown or already swept /
    aborted) or :class:`Conflict` (already committed)."""
    validate_txn_id(txn_id)
    async with store.write() as session:
        row = (await session.execute(
            select(FV.id, FV.state).where(FV.txn_id == txn_id).with_for_update())).first()
        if row is None:
            raise NotFound(f"transaction {txn_id!r} is unknown or expired")
        if row.state != PENDING:
            raise Conflict(f"transaction {txn_id!r} is already committed")
        await session.execute(delete(FV).where(FV.id == row.id))


async def get_version(store: Store, path: str, version: int | None, with_digests: bool) -> FV:
    """The committed version ``version`` of ``path``, or its latest committed version when None: one
    indexed query (``ix_file_versions_path_state_version``). Raises :class:`NotFound`."""
    q = select(FV).where(FV.path == path, FV.state == COMMITTED)
    if version is not None:
        q = q.where(FV.version == version)
    else:
        q = q.order_by(FV.version.desc()).limit(1)
    if not with_digests:
        q = q.options(defer(FV.chunk_digests))
    async with store.read() as session:
        row = (await session.execute(q)).scalar_one_or_none()
    if row is None:
        what = f"version {version} of {path!r}" if version is not None else repr(path)
        raise NotFound(f"no such file: {what}")
    return row


async def list_versions(store: Store, path: str) -> list[dict]:
    """Committed versions of ``path``, oldest first. Raises :class:`NotFound` when there are none."""
    q = (select(FV).where(FV.path == path, FV.state == COMMITTED).order_by(FV.version)
         .options(defer(FV.chunk_digests)))
    async with store.read() as session:
        rows = (await session.execute(q)).scalars().all()
    if not rows:
        raise NotFound(f"no such file: {path!r}")
    return [version_info(r) for r in rows]


async def sweep_pending(store: Store, ttl: float) -> int:
    """Delete pending versions created more than ``ttl`` seconds ago (the reference design's 10-minute
    rule); return how many. Their commit then answers 404."""
    cutoff = time.time() - ttl
    async with store.write() as session:
        result = await session.execute(
            delete(FV).where(FV.state == PENDING, FV.created_at < cutoff).execution_options(synchronize_session=False))
    return result.rowcount or 0
