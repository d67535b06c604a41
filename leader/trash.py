"""The trash: tombstoned versions that can be restored until the purge drops them.

``DELETE /files`` (:func:`leader.namespace.delete_file`) moves every committed version of a path to
``deleted`` with one ``deleted_at`` per delete call, so the versions of one delete share a time stamp.
:func:`undelete` restores the versions of the most recent delete of a path; :func:`purge_expired` drops
tombstones older than ``TRASH_RETENTION`` (Garage's rule: a tombstone goes only after a grace delay).
Until then the versions count as referenced for chunk garbage collection (``leader/gc.py``), so their
chunks stay.
"""

from __future__ import annotations

import time

from sqlalchemy import delete, func, select, update

from leader.models import FileVersion as FV
from leader.store import Store
from leader.txns import is_a_file, is_a_folder
from leader.version_sql import COMMITTED, DELETED, FILE_VERSIONS, INFO_COLUMNS, IS_FOLDER, LOCK_PATH, version_info
from shared.errors import Conflict, NotFound
from shared.paths import ancestors_of
from shared.protocol.models import VersionInfo


async def list_trash(store: Store, retention: float) -> list[dict]:
    """One entry per path with versions in the trash, sorted by path: ``{"path", "size" (bytes, of the
    newest version of its most recent delete), "versions" (how many that delete tombstoned, i.e. what
    :func:`undelete` restores), "deleted_at", "expires_at"}`` (UNIX seconds)."""
    q = (select(FV.path, FV.version, FV.size, FV.deleted_at)
         .where(FV.state == DELETED).order_by(FV.path, FV.deleted_at, FV.version))
    async with store.read() as session:
        rows = (await session.execute(q)).all()
    latest: dict[str, dict] = {}
    for row in rows:  # ordered, so the last delete of a path comes last
        entry = latest.get(row.path)
        if entry is None or row.deleted_at != entry["deleted_at"]:
            entry = latest[row.path] = {"path": row.path, "size": row.size, "versions": 0,
                                        "deleted_at": row.deleted_at,
                                        "expires_at": (row.deleted_at or 0.0) + retention}
        entry["versions"] += 1
        entry["size"] = row.size  # ordered by version: the newest version of that delete wins
    return list(latest.values())


async def undelete(store: Store, path: str, deleted_at: float | None = None) -> tuple[int, VersionInfo]:
    """Restore the tombstoned versions of one delete of ``path`` to ``committed``: the delete at
    ``deleted_at`` (UNIX seconds, exactly as :func:`list_trash` or a history scan gave it), or the most
    recent one; return how many and the :class:`VersionInfo` of the newest one restored.

    With no live version, the newest restored one becomes the latest. With a live version, only an older
    delete named by ``deleted_at`` may be restored, its versions being older than the live one (S3's
    removal of a delete marker that is not the latest): they come back as older versions, and the latest
    stays.

    Raises :class:`NotFound` when nothing of ``path`` (of that delete) is in the trash and
    :class:`Conflict` when the path has a live version that the restored ones would shadow or be
    shadowed by, or when it would make one name a file and a folder (a live file above it, live files
    below it, or an explicit folder at it or below it).
    """
    store.cache.begin_write(path)  # the path's cache entries stay bypassed until the restore ended
    try:
        await store.leases.revoke([path])
        async with store.write() as session:
            # Lock the path's rows (PostgreSQL) so a concurrent commit or delete of the path serializes with
            # us; on SQLite the store's write lock already does.
            await session.execute(LOCK_PATH, {"path": path})
            named = deleted_at is not None
            if not named:
                deleted_at = (await session.execute(
                    select(func.max(FV.deleted_at)).where(FV.path == path, FV.state == DELETED))).scalar()
            newest_restored = None if deleted_at is None else (await session.execute(
                select(func.max(FV.version)).where(FV.path == path, FV.state == DELETED,
                                                   FV.deleted_at == deleted_at))).scalar()
            if newest_restored is None:
                raise NotFound(f"no delete of {path!r} at {deleted_at!r} is in the trash" if named
                               else f"nothing in the trash for {path!r}")
            live = (await session.execute(
                select(func.max(FV.version)).where(FV.path == path, FV.state == COMMITTED))).scalar()
            if live is not None and (newest_restored > live or not named):
                raise Conflict(f"{path!r} exists again; delete or rename it before restoring the trashed one")
            if live is None:
                await _check_restorable(session, path)
            c = FILE_VERSIONS.c
            rows = (await session.execute(
                update(FILE_VERSIONS).where(c.path == path, c.state == DELETED, c.deleted_at == deleted_at)
                .values(state=COMMITTED, deleted_at=None).returning(*INFO_COLUMNS))).all()
            newest = max(rows, key=lambda row: row.version)
    finally:
        store.cache.end_write(path)
    return len(rows), version_info(newest)


async def _check_restorable(session, path: str) -> None:
    """Raise :class:`Conflict` when a file at ``path`` would make a name a file and a folder."""
    if (await session.execute(IS_FOLDER, {"path": path})).first() is not None:
        raise is_a_folder(path)
    above = (await session.execute(select(FV.path).where(
        FV.state == COMMITTED, FV.path.in_(ancestors_of(path))).limit(1))).first()
    if above is not None:
        raise is_a_file(above.path, path)


async def purge_expired(store: Store, retention: float) -> int:
    """Delete tombstoned versions whose ``deleted_at`` is more than ``retention`` seconds ago; return
    how many. Their chunks become unreferenced, so the chunk servers' GC collects them."""
    cutoff = time.time() - retention
    async with store.write() as session:
        result = await session.execute(
            delete(FV).where(FV.state == DELETED, FV.deleted_at < cutoff)
            .execution_options(synchronize_session=False))
    return result.rowcount or 0
