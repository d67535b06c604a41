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

from sqlalchemy import bindparam, delete, false, func, insert, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from leader.manifest_cache import CachedVersion
from leader.models import FileVersion as FV
from leader.store import WRITE_RETRIES, Store
from shared.errors import BadRequest, Conflict, NotFound, PreconditionFailed, RingFSError, Unavailable
from shared.protocol import DIGEST_SIZE, encode_manifest

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


# ---------------------------------------------------------------- hot-path Core statements
# Built once: SQLAlchemy caches their compiled form, and Core on a plain connection skips the ORM's unit
# of work. Bind parameters are typed so PostgreSQL (asyncpg renders casts) infers the right types in a
# SELECT list.

_T = FV.__table__
_C = _T.c
# The VersionInfo columns, in version_info()'s order.
_INFO_COLUMNS = (_C.path, _C.version, _C.size, _C.sha256, _C.chunk_count, _C.chunk_size, _C.replication,
                 _C.state, _C.created_at, _C.committed_at, _C.deleted_at)


def _typed(name: str):
    return bindparam(name, type_=_C[name].type)


# Phase 2 in one statement: INSERT ... SELECT 1 + max(version) over every row of the path ... RETURNING.
_PREPARE_COLUMNS = ("path", "version", "size", "sha256", "chunk_size", "replication", "chunk_count",
                    "chunk_digests", "state", "txn_id", "create_only", "created_at")
_PREPARE = (
    insert(_T)
    .from_select(
        list(_PREPARE_COLUMNS),
        select(*[(func.coalesce(func.max(_C.version), 0) + 1).label("version") if name == "version"
                 else literal(PENDING, _C.state.type).label(name) if name == "state"
                 else _typed(name).label(name)
                 for name in _PREPARE_COLUMNS])
        .where(_C.path == _typed("path")),
    )
    .returning(_C.version)
)
_LIVE_EXISTS = select(_C.id).where(_C.path == _typed("path"), _C.state == COMMITTED).limit(1)
# Phase 4 of a plain (not create-only) write: one UPDATE. Anything else takes the careful path.
_COMMIT_PLAIN = (
    update(_T)
    .where(_C.txn_id == bindparam("t", type_=_C.txn_id.type), _C.state == PENDING,
           _C.create_only == false())
    .values(state=COMMITTED, committed_at=bindparam("now", type_=_C.committed_at.type))
    .returning(*_INFO_COLUMNS)
)
_LATEST = (select(*_INFO_COLUMNS, _C.chunk_digests).where(_C.path == _typed("path"), _C.state == COMMITTED)
           .order_by(_C.version.desc()).limit(1))
_EXACT = select(*_INFO_COLUMNS, _C.chunk_digests).where(
    _C.path == _typed("path"), _C.state == COMMITTED, _C.version == _typed("version"))


def _info_of(row) -> dict:
    """A Core row of ``_INFO_COLUMNS`` as a VersionInfo dict (the same keys and order as version_info)."""
    return {
        "path": row[0], "version": row[1], "size": row[2], "sha256": row[3], "chunks": row[4],
        "chunk_size": row[5], "replication": row[6], "state": row[7], "created_at": row[8],
        "committed_at": row[9], "deleted_at": row[10],
    }


async def prepare(store: Store, nv: NewVersion) -> dict:
    """Record ``nv`` as a pending version with the next version number; return
    ``{"txn_id", "path", "version", "state": "pending"}``.

    Raises :class:`Conflict` (409) when ``txn_id`` was used before, :class:`PreconditionFailed` (412)
    for ``create_only`` when a live version exists, :class:`Unavailable` after ``WRITE_RETRIES`` lost
    races.
    """
    params = {
        "path": nv.path, "size": nv.size, "sha256": nv.sha256, "chunk_size": nv.chunk_size,
        "replication": nv.replication, "chunk_count": len(nv.digests) // DIGEST_SIZE,
        "chunk_digests": nv.digests, "txn_id": nv.txn_id, "create_only": nv.create_only,
    }
    for attempt in range(WRITE_RETRIES):
        try:
            async with store.write_conn() as conn:
                if nv.create_only and (await conn.execute(_LIVE_EXISTS, {"path": nv.path})).first() is not None:
                    raise PreconditionFailed(f"{nv.path!r} already exists (create-only write)")
                params["created_at"] = time.time()
                version = (await conn.execute(_PREPARE, params)).scalar_one()
            return {"txn_id": nv.txn_id, "path": nv.path, "version": version, "state": PENDING}
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
    cache = store.cache
    # Fast path: a pending plain write is one UPDATE ... RETURNING. The path's cache entries are marked
    # busy before the transaction commits and invalidated after it ended (leader/manifest_cache.py).
    path = None
    try:
        async with store.write_conn() as conn:
            row = (await conn.execute(_COMMIT_PLAIN, {"t": txn_id, "now": time.time()})).first()
            if row is not None:
                path = row[0]
                cache.begin_write(path)
    finally:
        if path is not None:
            cache.end_write(path)
    if row is not None:
        return _info_of(row)
    # Create-only, already committed (idempotent), unknown or swept: the careful path.
    return await _commit_careful(store, txn_id)


async def _commit_careful(store: Store, txn_id: str) -> dict:
    cache = store.cache
    lost_race = False
    path = None
    try:
        async with store.write() as session:
            head = (await session.execute(
                select(FV.path, FV.create_only, FV.state).where(FV.txn_id == txn_id))).first()
            if head is None:
                raise NotFound(f"transaction {txn_id!r} is unknown or expired")
            path = head.path
            cache.begin_write(path)
            row, lost_race = await _commit_locked(session, txn_id, head)
    finally:
        if path is not None:
            cache.end_write(path)
    if lost_race:
        raise PreconditionFailed(f"{head.path!r} was created by another writer first; transaction aborted")
    return version_info(row)


async def _commit_locked(session: AsyncSession, txn_id: str, head) -> tuple[FV, bool]:
    """The careful commit inside its transaction: ``(row, lost_race)``."""
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
        return row, False
    if row.create_only and await live_version_exists(session, row.path, exclude_id=row.id):
        await session.delete(row)
        return row, True
    row.state = COMMITTED
    row.committed_at = time.time()
    return row, False


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


async def lookup(store: Store, path: str, version: int | None) -> CachedVersion:
    """The committed version ``version`` of ``path`` (its latest when None) as a :class:`CachedVersion`
    (VersionInfo dict and encoded manifest), from the manifest cache or one indexed Core query that then
    fills it. Raises :class:`NotFound`."""
    cache = store.cache
    entry = cache.get(path, version)
    if entry is not None:
        return entry
    generation = cache.generation()  # before the query: a mutation meanwhile makes the fill stale
    async with store.read_conn() as conn:
        if version is None:
            row = (await conn.execute(_LATEST, {"path": path})).first()
        else:
            row = (await conn.execute(_EXACT, {"path": path, "version": version})).first()
    if row is None:
        what = f"version {version} of {path!r}" if version is not None else repr(path)
        raise NotFound(f"no such file: {what}")
    info = _info_of(row)
    entry = CachedVersion(info, encode_manifest(info, bytes(row[11])))
    cache.put(path, version, entry, generation)
    return entry


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


# ---------------------------------------------------------------- batches (POST /txns/batch, /txns/batch-commit)
# Concurrent uploads through one user app coalesce their phase-2 and phase-4 calls
# (user_app/leader_batcher.py); these run a batch in as few transactions as possible with the per-txn
# semantics of prepare() and commit() above.

# Most txns in one batch request (the user app's batcher sends at most this many).
MAX_BATCH = 512

_MAX_VERSIONS = (select(_C.path, func.max(_C.version)).where(_C.path.in_(bindparam("paths", expanding=True)))
                 .group_by(_C.path))
_LIVE_PATHS = (select(_C.path).where(_C.path.in_(bindparam("paths", expanding=True)), _C.state == COMMITTED)
               .distinct())
_INSERT_MANY = insert(_T)
# The fast path of many commits in one UPDATE. The rows are locked in id order first (the subquery's
# FOR UPDATE; SQLite ignores it and serializes writers anyway), the order the careful path locks a
# path's rows in, so two batches or a batch and a create-only commit cannot deadlock on PostgreSQL.
_COMMIT_PLAIN_MANY = (
    update(_T)
    .where(_C.id.in_(select(_C.id).where(_C.txn_id.in_(bindparam("ts", expanding=True)), _C.state == PENDING,
                                         _C.create_only == false())
                     .order_by(_C.id).with_for_update().scalar_subquery()),
           _C.state == PENDING, _C.create_only == false())
    .values(state=COMMITTED, committed_at=bindparam("now", type_=_C.committed_at.type))
    .returning(*_INFO_COLUMNS, _C.txn_id)
)


def error_result(exc: RingFSError) -> dict:
    """A failed txn in a batch answer: the message and status its single request would have answered."""
    return {"error": exc.message, "status": exc.status}


async def prepare_many(store: Store, nvs: list[NewVersion]) -> list[dict]:
    """:func:`prepare` for each of ``nvs`` (validated, distinct txn ids); returns, in order, its result
    or :func:`error_result`. All go in one transaction (live-version check, max versions, one multi-row
    INSERT); sections of one path get consecutive versions in batch order. If that transaction loses a
    unique-constraint race (a concurrent writer took a version number, or a txn id was used before), it
    rolls back and every section goes through :func:`prepare` alone, in order (which retries)."""
    if not nvs:
        return []
    results: list[dict | None] = [None] * len(nvs)
    try:
        async with store.write_conn() as conn:
            create_only_paths = sorted({nv.path for nv in nvs if nv.create_only})
            live: set[str] = set()
            if create_only_paths:
                live = set((await conn.execute(_LIVE_PATHS, {"paths": create_only_paths})).scalars())
            todo = [i for i, nv in enumerate(nvs) if not (nv.create_only and nv.path in live)]
            for i, nv in enumerate(nvs):
                if nv.create_only and nv.path in live:
                    results[i] = error_result(PreconditionFailed(f"{nv.path!r} already exists (create-only write)"))
            if todo:
                paths = sorted({nvs[i].path for i in todo})
                latest = dict((await conn.execute(_MAX_VERSIONS, {"paths": paths})).all())
                now = time.time()
                rows = []
                for i in todo:
                    nv = nvs[i]
                    version = (latest.get(nv.path) or 0) + 1
                    latest[nv.path] = version
                    rows.append({
                        "path": nv.path, "version": version, "size": nv.size, "sha256": nv.sha256,
                        "chunk_size": nv.chunk_size, "replication": nv.replication,
                        "chunk_count": len(nv.digests) // DIGEST_SIZE, "chunk_digests": nv.digests,
                        "state": PENDING, "txn_id": nv.txn_id, "create_only": nv.create_only, "created_at": now,
                    })
                    results[i] = {"txn_id": nv.txn_id, "path": nv.path, "version": version, "state": PENDING}
                await conn.execute(_INSERT_MANY, rows)
    except IntegrityError:
        # Rolled back: nothing of the batch was recorded. One by one, in order, with prepare()'s retries
        # and its answers (409 for a reused txn id, 412, 503).
        results = []
        for nv in nvs:
            try:
                results.append(await prepare(store, nv))
            except RingFSError as exc:
                results.append(error_result(exc))
    return results  # type: ignore[return-value]


async def commit_many(store: Store, txn_ids: list[str]) -> dict[str, dict]:
    """:func:`commit` for each of ``txn_ids`` (distinct); returns ``{txn_id: VersionInfo dict or
    error_result}``. Every pending plain write commits in one UPDATE ... RETURNING (its paths marked busy
    in the manifest cache before the transaction commits, invalidated after it ended, as commit() does);
    the rest (create-only, already committed, unknown, swept) take the careful path one by one."""
    results: dict[str, dict] = {}
    valid: list[str] = []
    for txn_id in txn_ids:
        try:
            valid.append(validate_txn_id(txn_id))
        except BadRequest as exc:
            results[txn_id] = error_result(exc)
    cache = store.cache
    done: dict[str, dict] = {}
    if valid:
        busy: list[str] = []
        try:
            async with store.write_conn() as conn:
                rows = (await conn.execute(_COMMIT_PLAIN_MANY, {"ts": valid, "now": time.time()})).all()
                for row in rows:
                    cache.begin_write(row[0])
                    busy.append(row[0])
                    done[row[11]] = _info_of(row)
        finally:
            for path in busy:
                cache.end_write(path)
    for txn_id in valid:
        info = done.get(txn_id)
        if info is None:
            try:
                info = await _commit_careful(store, txn_id)
            except RingFSError as exc:
                info = error_result(exc)
        results[txn_id] = info
    return {txn_id: results[txn_id] for txn_id in txn_ids}


# ---------------------------------------------------------------- many lookups (POST /manifests)

# Paths per SQL query of lookup_many (bounds the IN list's bind parameters).
_LOOKUP_CHUNK = 512
_LATER = _T.alias("later")
_LATEST_MANY = (
    select(*_INFO_COLUMNS, _C.chunk_digests)
    .where(_C.path.in_(bindparam("paths", expanding=True)), _C.state == COMMITTED,
           _C.version == select(func.max(_LATER.c.version))
           .where(_LATER.c.path == _C.path, _LATER.c.state == COMMITTED).scalar_subquery())
)
_EXACT_MANY = select(*_INFO_COLUMNS, _C.chunk_digests).where(
    _C.path.in_(bindparam("paths", expanding=True)), _C.state == COMMITTED, _C.version == _typed("version"))


async def lookup_many(store: Store, paths: list[str], version: int | None) -> list[CachedVersion | RingFSError]:
    """:func:`lookup` of each of ``paths`` (normalized; repeats allowed) at ``version`` (latest when None):
    per path, in order, its :class:`CachedVersion` or the :class:`NotFound` that lookup() would raise.
    Cache hits cost no SQL; the misses are resolved together, one indexed query per 512 distinct paths,
    and fill the cache under the same generation rule as lookup(). SQL failures raise
    :class:`Unavailable` for the whole call."""
    cache = store.cache
    found: dict[str, CachedVersion] = {}
    missed: dict[str, None] = {}  # distinct misses, in request order
    for path in paths:
        if path in found or path in missed:
            continue
        entry = cache.get(path, version)
        if entry is not None:
            found[path] = entry
        else:
            missed[path] = None
    misses = list(missed)
    if misses:
        generation = cache.generation()  # before the queries, as in lookup()
        rows = []
        async with store.read_conn() as conn:
            for i in range(0, len(misses), _LOOKUP_CHUNK):
                group = misses[i : i + _LOOKUP_CHUNK]
                if version is None:
                    result = await conn.execute(_LATEST_MANY, {"paths": group})
                else:
                    result = await conn.execute(_EXACT_MANY, {"paths": group, "version": version})
                rows.extend(result.all())
        for row in rows:
            info = _info_of(row)
            entry = CachedVersion(info, encode_manifest(info, bytes(row[11])))
            found[info["path"]] = entry
            cache.put(info["path"], version, entry, generation)
    out: list[CachedVersion | RingFSError] = []
    for path in paths:
        entry = found.get(path)
        if entry is None:
            what = f"version {version} of {path!r}" if version is not None else repr(path)
            out.append(NotFound(f"no such file: {what}"))
        else:
            out.append(entry)
    return out
