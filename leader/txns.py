"""The leader's half of the two-phase commit: prepare (phase 2), commit (phase 4), abort, and the expiry
of pending versions.

The reference design's write: phase 2 records the version as ``pending`` with its ordered chunk list,
phase 4 commits it (only then visible); pending versions never committed are swept after
``PENDING_TTL``, and their transaction ids are remembered for :data:`EXPIRED_TXN_RETENTION` so that a
late commit answers 410 Gone rather than 404. Version numbers are ``1 + max(version)`` over every row of
the path (GFS §4.5 keeps a version number per chunk; here per file). Two writers racing for the same
number both succeed: the loser hits the ``(path, version)`` unique constraint and retries in a fresh
transaction.

One code path for one transaction and many: :func:`prepare_many` and :func:`commit_many` are the
implementation (``POST /txns/batch`` and ``/txns/batch-commit``, which user apps use to coalesce
concurrent uploads); :func:`prepare` and :func:`commit` are one-item batches that raise their item's
error. A batch answers, per transaction, exactly what its single call answers.

A commit also enforces, in its own transaction, the rules that depend on the other versions of the
namespace: a create-only write needs no live version of its path, a conditional write (``if_match``, RFC
9110 §13.1.1) one that matches, and no name may be a live file and a folder at once (``shared/paths.py``;
an explicit folder, ``leader/folders.py``, is a folder as much as one holding files).
A prepare checks the same rules against what is committed, to fail before the upload is committed.

A part of a multipart upload (``leader/parts.py``) is prepared and committed here too, under rules of its
own: its upload must exist and write the path the prepare names (checked at prepare, and again at
commit with the upload's row share-locked), and its commit makes the row a ``part``, with no
file-or-folder or precondition check (its path is no file's). A commit that finds the upload gone drops
the row and answers 404.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import AsyncIterator, Awaitable, Callable, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from leader import version_sql as sql
from leader.new_version import NewVersion
from leader.parts import COMMIT_PART_ROW, LOCK_UPLOAD, is_part_path, no_such_upload, parse_part_path, upload_refusals
from leader.store import WRITE_RETRIES, Store
from shared.errors import BadRequest, Conflict, Gone, NotFound, PreconditionFailed, RingFSError, Unavailable
from shared.paths import ancestors_of
from shared.protocol.models import PreparedVersion, VersionInfo
from shared.protocol.rules import if_match_allows, validate_txn_id

# Seconds an expired transaction id is remembered after the sweep dropped its pending version: one day,
# far longer than any client waits between its prepare and its commit, so a late commit answers 410;
# after that it is a 404 like an unknown transaction. The trash-purge job forgets older ones.
EXPIRED_TXN_RETENTION = 24 * 3600.0
# Transaction ids per statement of the sweep's bookkeeping (bounds an IN list's bind parameters).
_IDS_PER_STATEMENT = 500

T = TypeVar("T")


def _one(outcome: T | RingFSError) -> T:
    """A one-item batch's outcome: its result, or its error raised."""
    if isinstance(outcome, RingFSError):
        raise outcome
    return outcome


# ---------------------------------------------------------------- prepare (phase 2)


async def prepare(store: Store, nv: NewVersion) -> PreparedVersion:
    """Record ``nv`` as a pending version with the next version number of its path.

    Raises :class:`Conflict` (409) when the transaction id was used before (by a version or by a
    transaction that expired) or the path would be a file and a folder (a live file is below it or
    above it), :class:`PreconditionFailed` (412) for a create-only write when the path has a live
    version or a conditional one (``if_match``) when its live version does not match, and
    :class:`Unavailable` (503) after ``WRITE_RETRIES`` lost races."""
    return _one((await prepare_many(store, [nv]))[0])


class _NotRecorded(Exception):
    """A version of the batch was not inserted (its transaction id expired): the transaction rolls back."""


async def prepare_many(store: Store, nvs: list[NewVersion]) -> list[PreparedVersion | RingFSError]:
    """:func:`prepare` of each of ``nvs`` (validated, distinct transaction ids): per item, in order, its
    :class:`PreparedVersion` or the error its single prepare raises.

    All go in one transaction (the checks of :func:`_refusals`, then one ``INSERT ... SELECT`` per
    :data:`version_sql.ROWS_PER_INSERT` versions); versions of one path get
    consecutive numbers in batch order. If that transaction loses a unique-constraint race (a concurrent
    writer took a version number, or a transaction id was used before) or meets an expired transaction
    id, it rolls back; a batch then goes one by one, in order, each item as a one-item batch, which
    retries a lost race up to ``WRITE_RETRIES`` times."""
    if not nvs:
        return []
    for attempt in range(WRITE_RETRIES):
        outcomes: list[PreparedVersion | RingFSError | None] = [None] * len(nvs)
        try:
            async with store.write_conn() as conn:
                refused = await _refusals(conn, nvs)
                todo: list[int] = []
                for i, nv in enumerate(nvs):
                    if i in refused:
                        outcomes[i] = refused[i]
                    else:
                        todo.append(i)
                now = time.time()
                versions: dict[str, int] = {}
                for start in range(0, len(todo), sql.ROWS_PER_INSERT):
                    group = [nvs[i] for i in todo[start : start + sql.ROWS_PER_INSERT]]
                    for row in await conn.execute(sql.insert_pending(len(group)), _insert_params(group, now)):
                        versions[row.txn_id] = row.version
                if len(versions) < len(todo):
                    raise _NotRecorded()  # rolls the transaction back
        except (IntegrityError, _NotRecorded):
            if len(nvs) > 1:
                return [(await prepare_many(store, [nv]))[0] for nv in nvs]
            txn_id = nvs[0].txn_id
            async with store.read_conn() as conn:
                if (await conn.execute(sql.TXN_ID_USED, {"t": txn_id})).scalar():
                    return [Conflict(f"txn_id {txn_id!r} was already used")]
            await asyncio.sleep(random.uniform(0, 0.002 * (attempt + 1)))  # de-synchronize racers
            continue
        for i in todo:
            nv = nvs[i]
            outcomes[i] = PreparedVersion(txn_id=nv.txn_id, path=nv.path, version=versions[nv.txn_id])
        return outcomes  # type: ignore[return-value]
    return [Unavailable(f"could not assign a version to {nvs[0].path!r}: too many concurrent writers")]


async def _refusals(conn: AsyncConnection, nvs: list[NewVersion]) -> dict[int, RingFSError]:
    """``{index: error}`` for those of ``nvs`` whose prepare is refused against what is committed now:
    a live file above the path, a live file or an explicit folder below it or an explicit folder at it
    (409), a create-only write of a live path or a conditional one whose ``if_match`` fails (412); for a
    part, no such upload (404) or an upload of another path (400). One statement per check that applies."""
    refused: dict[int, RingFSError] = {}
    parts = [(i, nv) for i, nv in enumerate(nvs) if nv.is_part]
    if parts:
        asked = [(nv.upload_id, nv.upload_path) for _, nv in parts]
        for (i, _), refusal in zip(parts, await upload_refusals(conn, asked)):
            if refusal is not None:
                refused[i] = refusal
        nvs_of_files = [nv for nv in nvs if not nv.is_part]
    else:
        nvs_of_files = nvs
    paths = sorted({nv.path for nv in nvs_of_files})
    above = sorted({a for p in paths for a in ancestors_of(p)})
    files = set((await conn.execute(sql.LIVE_PATHS, {"paths": above})).scalars()) if above else set()
    folders: set[str] = set()
    for start in range(0, len(paths), sql.ROWS_PER_INSERT):
        group = paths[start : start + sql.ROWS_PER_INSERT]
        binds = {f"asked_{i}": p for i, p in enumerate(group)}
        folders.update((await conn.execute(sql.folders_among(len(group)), binds)).scalars())
    create_only = sorted({nv.path for nv in nvs_of_files if nv.create_only})
    live = set((await conn.execute(sql.LIVE_PATHS, {"paths": create_only})).scalars()) if create_only else set()
    conditional = sorted({nv.path for nv in nvs_of_files if nv.if_match is not None})
    current = dict((await conn.execute(sql.LATEST_SHAS, {"paths": conditional})).tuples().all()) if conditional else {}
    for i, nv in enumerate(nvs):
        if nv.is_part:
            continue
        file_above = next((a for a in ancestors_of(nv.path) if a in files), None)
        if file_above is not None:
            refused[i] = is_a_file(file_above, nv.path)
        elif nv.path in folders:
            refused[i] = is_a_folder(nv.path)
        elif nv.create_only and nv.path in live:
            refused[i] = PreconditionFailed(f"{nv.path!r} already exists (create-only write)")
        elif not if_match_allows(nv.if_match, current.get(nv.path)):
            refused[i] = if_match_failed(nv.path, current.get(nv.path))
    return refused


def is_a_file(file: str, path: str) -> Conflict:
    """409: ``path`` cannot be written, a live file ``file`` is above it."""
    return Conflict(f"{file!r} is a file, so {path!r} cannot be written below it")


def is_a_folder(path: str) -> Conflict:
    """409: ``path`` cannot be written as a file: live files are below it, or it is (or holds) an explicit
    folder."""
    return Conflict(f"{path!r} is a folder (it holds files or was created as a folder), so it cannot be "
                    f"written as a file")


def if_match_failed(path: str, current: str | None) -> PreconditionFailed:
    """412: a conditional write's (or delete's) ``If-Match`` does not match ``path``'s live version."""
    if current is None:
        return PreconditionFailed(f"If-Match failed: {path!r} has no live version")
    return PreconditionFailed(f'If-Match failed: the live version of {path!r} has ETag "{current}"')


def _insert_params(group: list[NewVersion], now: float) -> dict:
    """The binds of ``version_sql.insert_pending(len(group))``."""
    params: dict = {}
    seen: dict[str, int] = {}  # path -> versions of it so far in this statement
    for i, nv in enumerate(group):
        seen[nv.path] = ordinal = seen.get(nv.path, 0) + 1
        params.update({
            f"path_{i}": nv.path, f"size_{i}": nv.size, f"sha256_{i}": nv.sha256, f"chunk_size_{i}": nv.chunk_size,
            f"replication_{i}": nv.replication, f"chunk_count_{i}": nv.chunk_count,
            f"chunk_digests_{i}": nv.digests, f"txn_id_{i}": nv.txn_id, f"create_only_{i}": nv.create_only,
            f"if_match_{i}": nv.if_match, f"created_at_{i}": now, f"ordinal_{i}": ordinal, f"etag_{i}": nv.etag,
            f"content_type_{i}": nv.content_type, f"user_metadata_{i}": nv.user_metadata,
            f"object_headers_{i}": nv.object_headers,
        })
    return params


async def prepare_derived(store: Store, derive: Callable[[AsyncConnection], Awaitable[NewVersion]],
                          what: str) -> None:
    """Record as pending the version ``await derive(conn)`` builds from what it reads in the same write
    transaction (a copy's source, an upload's parts): :func:`prepare_in` after it, and both again in a
    fresh transaction when a concurrent writer took the version number. ``derive`` raises to refuse.
    Raises what ``derive`` and :func:`prepare_in` raise, and :class:`Unavailable` (503) naming ``what``
    after ``WRITE_RETRIES`` lost races."""
    for attempt in range(WRITE_RETRIES):
        try:
            async with store.write_conn() as conn:
                await prepare_in(conn, await derive(conn))
            return
        except IntegrityError:  # a concurrent writer took the version number: again, in a fresh transaction
            await asyncio.sleep(random.uniform(0, 0.002 * (attempt + 1)))
    raise Unavailable(f"could not assign a version to {what}: too many concurrent writers")


async def prepare_in(conn: AsyncConnection, nv: NewVersion) -> PreparedVersion:
    """:func:`prepare` of ``nv`` inside the caller's transaction ``conn``, without retries: for a caller that
    reads what the version copies in the same transaction (``leader/copy.py``). Raises the refusal
    :func:`prepare` raises (409, 412); an :class:`IntegrityError` (a lost race for the version number)
    passes through for the caller to retry in a fresh transaction."""
    refused = await _refusals(conn, [nv])
    if refused:
        raise refused[0]
    row = (await conn.execute(sql.insert_pending(1), _insert_params([nv], time.time()))).first()
    if row is None:  # its transaction id expired before
        raise Conflict(f"txn_id {nv.txn_id!r} was already used")
    return PreparedVersion(txn_id=nv.txn_id, path=nv.path, version=row.version)


# ---------------------------------------------------------------- commit (phase 4)


async def commit(store: Store, txn_id: str) -> VersionInfo:
    """Make the pending version of ``txn_id`` visible; its :class:`VersionInfo`.

    Idempotent: a committed (or since deleted) transaction answers its info again. Raises
    :class:`BadRequest` (400) for a malformed transaction id, :class:`NotFound` (404) for an unknown
    one, :class:`Gone` (410) when its pending version was swept after ``PENDING_TTL``, and
    :class:`PreconditionFailed` (412) when a create-only write lost the race to another version of its
    path (the transaction is then aborted)."""
    return _one((await commit_many(store, [txn_id]))[0])


async def commit_many(store: Store, txn_ids: list[str]) -> list[VersionInfo | RingFSError]:
    """:func:`commit` of each of ``txn_ids`` (distinct): per transaction, in order, its
    :class:`VersionInfo` or the error its single commit raises.

    Every pending plain write (neither create-only nor conditional) commits in one transaction
    (:func:`_commit_plain`); its paths are marked busy in the manifest cache before the transaction
    commits and invalidated after it ended (``leader/manifest_cache.py``). The rest (create-only,
    conditional, already committed, unknown, expired) take the careful path one by one."""
    outcomes: dict[str, VersionInfo | RingFSError] = {}
    valid: list[str] = []
    for txn_id in txn_ids:
        try:
            valid.append(validate_txn_id(txn_id))
        except BadRequest as exc:
            outcomes[txn_id] = exc
    async with leases_revoked(store, valid):
        if valid:
            outcomes.update(await _commit_plain(store, valid))
        for txn_id in valid:
            if txn_id not in outcomes:
                try:
                    outcomes[txn_id] = await _commit_careful(store, txn_id)
                except RingFSError as exc:
                    outcomes[txn_id] = exc
    return [outcomes[txn_id] for txn_id in txn_ids]


@contextlib.asynccontextmanager
async def leases_revoked(store: Store, txn_ids: list[str]) -> AsyncIterator[None]:
    """Around the commits of ``txn_ids``: the paths of their pending versions stay busy in the manifest
    cache (no read lease starts on them) and their read leases are revoked before any commit's
    transaction begins, so no transaction waits on a user app (``leader/read_leases.py``). One indexed
    query, skipped when leases are off."""
    if not store.leases.lease_seconds or not txn_ids:
        yield
        return
    async with store.read_conn() as conn:
        paths = list((await conn.execute(sql.PENDING_PATHS, {"ts": txn_ids})).scalars())
    for path in paths:
        store.cache.begin_write(path)
    try:
        await store.leases.revoke(paths)
        yield
    finally:
        for path in paths:
            store.cache.end_write(path)


async def _commit_plain(store: Store, txn_ids: list[str]) -> dict[str, VersionInfo | RingFSError]:
    """The pending plain writes among ``txn_ids``, committed in one transaction: ``{txn_id: info}``, or
    :class:`Conflict` for a write that would make a name a file and a folder (its version is dropped).

    Four statements: the writes' rows, their lock with every row a file-or-folder decision depends on
    (``version_sql.LOCK_RELATED``), the commit of those whose path is no folder (no live file below it,
    no explicit folder at it or below it), and the drop of the refused ones. Among the batch, a write
    conflicting with an earlier one of the batch is refused."""
    cache = store.cache
    outcomes: dict[str, VersionInfo | RingFSError] = {}
    busy: list[str] = []
    try:
        async with store.write_conn() as conn:
            order = {t: i for i, t in enumerate(txn_ids)}
            own = sorted((await conn.execute(sql.PLAIN_PENDING, {"ts": txn_ids})).all(), key=lambda r: order[r.txn_id])
            own = [r for r in own if not is_part_path(r.path)]  # parts take the careful path
            if not own:
                return {}
            above = sorted({a for r in own for a in ancestors_of(r.path)})
            locked = {r.id: r for r in await conn.execute(
                sql.LOCK_RELATED, {"ids": [r.id for r in own], "paths": [], "ancestors": above})}
            files = {r.path for r in locked.values() if r.state == sql.COMMITTED}
            ok, refused = [], {}
            claimed: set[str] = set()  # files this batch commits, and the folders above them
            claimed_folders: set[str] = set()
            for r in own:
                if r.id not in locked or locked[r.id].state != sql.PENDING:
                    continue  # swept or committed meanwhile: the careful path answers it
                file_above = next((a for a in ancestors_of(r.path) if a in files or a in claimed), None)
                if file_above is not None:
                    refused[r.id] = (r.txn_id, is_a_file(file_above, r.path))
                elif r.path in claimed_folders:
                    refused[r.id] = (r.txn_id, is_a_folder(r.path))
                else:
                    ok.append(r)
                    claimed.add(r.path)
                    claimed_folders.update(ancestors_of(r.path))
            if ok:
                for row in await conn.execute(sql.COMMIT_IDS, {"ids": [r.id for r in ok], "now": time.time()}):
                    cache.begin_write(row.path)
                    busy.append(row.path)
                    outcomes[row.txn_id] = sql.version_info(row)
            for r in ok:
                if r.txn_id not in outcomes:  # a live file below it
                    refused[r.id] = (r.txn_id, is_a_folder(r.path))
            if refused:
                await conn.execute(sql.DELETE_IDS, {"ids": list(refused)})
    finally:
        for path in busy:
            cache.end_write(path)
    outcomes.update(refused.values())
    return outcomes


# Run in a commit's transaction once every rule allows it (:func:`commit_with`): the refusal that drops
# the pending version instead, or None to commit it.
Finish = Callable[[AsyncConnection], Awaitable[RingFSError | None]]


async def commit_with(store: Store, txn_id: str, finish: Finish) -> VersionInfo:
    """:func:`commit` of ``txn_id`` (a version of a file), running ``finish(conn)`` in the committing
    transaction once the commit's own rules allow it: when ``finish`` answers an error, the pending
    version is dropped and that error raised, else the version commits together with whatever
    ``finish`` wrote. For a caller whose commit must change more rows atomically (``leader/multipart.py``
    drops the completed upload). Raises what :func:`commit` raises, and ``finish``'s refusal. An
    already committed transaction answers its info again without running ``finish``."""
    txn_id = validate_txn_id(txn_id)
    async with leases_revoked(store, [txn_id]):
        return await _commit_careful(store, txn_id, finish)


async def _commit_careful(store: Store, txn_id: str, finish: Finish | None = None) -> VersionInfo:
    """:func:`commit` of a create-only, conditional, already committed, unknown or expired transaction, of
    a part, or of any with a ``finish`` (:func:`commit_with`)."""
    cache = store.cache
    path = None
    refusal: RingFSError | None = None
    try:
        async with store.write_conn() as conn:
            head = (await conn.execute(sql.TXN_HEAD, {"t": txn_id})).first()
            if head is None:
                raise await _missing(conn, txn_id)
            path = head.path
            cache.begin_write(path)
            part = parse_part_path(path)
            locked = []
            upload_alive = True
            if head.state == sql.PENDING and part is not None:
                # The upload's row first, share-locked: an abort or a completion that deletes it waits
                # for this commit, or went first and this one sees the upload gone (leader/parts.py).
                upload_alive = (await conn.execute(LOCK_UPLOAD, {"upload_id": part[0]})).first() is not None
            elif head.state == sql.PENDING:
                # Lock every row of the path and those the file-or-folder rule depends on, in id order, so
                # concurrent conditional commits of one path serialize on PostgreSQL (READ COMMITTED
                # re-reads the winner's committed row); on SQLite the store's write lock already
                # serializes them.
                locked = (await conn.execute(sql.LOCK_RELATED, {
                    "ids": [head.id], "paths": [path], "ancestors": ancestors_of(path)})).all()
            row = (await conn.execute(sql.TXN_ROW, {"t": txn_id})).first()
            if row is None:
                raise no_such_upload(part[0], meanwhile=True) if not upload_alive else await _missing(conn, txn_id)
            if row.state != sql.PENDING:
                info = sql.version_info(row)
            else:
                if part is not None:
                    refusal = None if upload_alive else no_such_upload(part[0], meanwhile=True)
                else:
                    refusal = await _commit_refusal(conn, row, locked)
                if refusal is None and finish is not None:
                    refusal = await finish(conn)
                if refusal is not None:
                    await conn.execute(sql.DELETE_ROW, {"row_id": row.id})
                else:
                    info = sql.version_info((await conn.execute(
                        COMMIT_PART_ROW if part is not None else sql.COMMIT_ROW,
                        {"row_id": row.id, "now": time.time()})).one())
    finally:
        if path is not None:
            cache.end_write(path)
    if refusal is not None:  # raised once the abort is committed
        raise refusal
    return info


async def _commit_refusal(conn: AsyncConnection, row, locked: list) -> RingFSError | None:
    """Why the locked pending ``row`` may not commit now, or None: a live file above its path, a live file
    or an explicit folder below it or an explicit folder at it (409), its create-only or ``if_match``
    condition failed (412). ``locked``: LOCK_RELATED's rows."""
    above = set(ancestors_of(row.path))
    file_above = next((r.path for r in locked if r.path in above and r.state == sql.COMMITTED), None)
    if file_above is not None:
        return is_a_file(file_above, row.path)
    if (await conn.execute(sql.IS_FOLDER, {"path": row.path})).first() is not None:
        return is_a_folder(row.path)
    if row.create_only and await sql.live_version_exists(conn, row.path, exclude_id=row.id):
        return PreconditionFailed(f"{row.path!r} was created by another writer first; transaction aborted")
    if row.if_match is not None:
        current = (await conn.execute(sql.LIVE_SHA, {"path": row.path, "row_id": row.id})).scalar()
        if not if_match_allows(row.if_match, current):
            return if_match_failed(row.path, current)
    return None


async def _missing(conn: AsyncConnection, txn_id: str) -> RingFSError:
    """The error for a transaction without a version row: :class:`Gone` if the sweep expired it,
    else :class:`NotFound`."""
    if (await conn.execute(sql.TXN_EXPIRED, {"t": txn_id})).first() is not None:
        return Gone(f"transaction {txn_id!r} expired: its pending version was not committed within "
                    f"PENDING_TTL and was swept; write the file again")
    return NotFound(f"transaction {txn_id!r} is unknown or expired")


# ---------------------------------------------------------------- abort


async def abort(store: Store, txn_id: str) -> None:
    """Drop the pending version of ``txn_id``. Raises :class:`BadRequest` (400) for a malformed
    transaction id, :class:`NotFound` (404) when it is unknown or already swept or aborted, and
    :class:`Conflict` (409) when it is already committed."""
    validate_txn_id(txn_id)
    async with store.write_conn() as conn:
        row = (await conn.execute(sql.TXN_ROW, {"t": txn_id})).first()
        if row is None:
            raise NotFound(f"transaction {txn_id!r} is unknown or expired")
        if row.state != sql.PENDING:
            raise Conflict(f"transaction {txn_id!r} is already committed")
        await conn.execute(sql.DELETE_ROW, {"row_id": row.id})


# ---------------------------------------------------------------- expiry


async def sweep_pending(store: Store, ttl: float) -> int:
    """Delete the pending versions created more than ``ttl`` seconds ago (the reference design's
    10-minute rule) and record their transaction ids as expired, in one transaction; return how many.
    Their commit then answers 410 (:func:`commit`)."""
    now = time.time()
    async with store.write_conn() as conn:
        swept = list((await conn.execute(sql.SWEEP_PENDING, {"cutoff": now - ttl})).scalars())
        for start in range(0, len(swept), _IDS_PER_STATEMENT):
            group = swept[start : start + _IDS_PER_STATEMENT]
            # An id recorded already (reused by a client after an earlier expiry) keeps its record.
            known = set((await conn.execute(sql.EXPIRED_AMONG, {"ts": group})).scalars())
            fresh = [{"txn_id": t, "expired_at": now} for t in group if t not in known]
            if fresh:
                await conn.execute(sql.RECORD_EXPIRED, fresh)
    return len(swept)


async def forget_expired(store: Store, retention: float = EXPIRED_TXN_RETENTION) -> int:
    """Drop the records of transactions expired more than ``retention`` seconds ago; return how many.
    Their commit then answers 404 like an unknown transaction's."""
    async with store.write_conn() as conn:
        result = await conn.execute(sql.PURGE_EXPIRED, {"cutoff": time.time() - retention})
    return result.rowcount or 0
