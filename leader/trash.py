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
from leader.version_sql import (COMMITTED, DELETED, FILE_VERSIONS, INFO_COLUMNS, IS_FOLDER, live_version_exists,
                                version_info)
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


async def undelete(store: Store, path: str) -> tuple[int, VersionInfo]:
    """Restore the tombstoned versions of the most recent delete of ``path`` to ``committed``; return how
    many and the :class:`VersionInfo` of the newest one (now the latest version).

    Raises :class:`NotFound` when nothing of ``path`` is in the trash and :class:`Conflict` when the path
    has a live version again (restoring would silently shadow or be shadowed by it), or when it would
    make one name a file and a folder (a live file above it, live files below it, or an explicit folder at
    it or below it).
    """
    store.cache.begin_write(path)  # the path's cache entries stay bypassed until the restore ended
    try:
        async with store.write() as session:
            # Lock the path's rows (PostgreSQL) so a concurrent commit or delete of the path serializes with
            # us; on SQLite the store's write lock already does.
            await session.execute(select(FV.id).where(FV.path == path).order_by(FV.id).with_for_update())
            last = (await session.execute(
                select(func.max(FV.deleted_at)).where(FV.path == path, FV.state == DELETED))).scalar()
            if last is None:
                raise NotFound(f"nothing in the trash for {path!r}")
            if await live_version_exists(session, path):
                raise Conflict(f"{path!r} exists again; delete or rename it before restoring the trashed one")
            if (await session.execute(IS_FOLDER, {"path": path})).first() is not None:
                raise is_a_folder(path)
            above = (await session.execute(select(FV.path).where(
                FV.state == COMMITTED, FV.path.in_(ancestors_of(path))).limit(1))).first()
            if above is not None:
                raise is_a_file(above.path, path)
            c = FILE_VERSIONS.c
            rows = (await session.execute(
                update(FILE_VERSIONS).where(c.path == path, c.state == DELETED, c.deleted_at == last)
                .values(state=COMMITTED, deleted_at=None).returning(*INFO_COLUMNS))).all()
            newest = max(rows, key=lambda row: row.version)
    finally:
        store.cache.end_write(path)
    return len(rows), version_info(newest)


async def purge_expired(store: Store, retention: float) -> int:
    """Delete tombstoned versions whose ``deleted_at`` is more than ``retention`` seconds ago; return
    how many. Their chunks become unreferenced, so the chunk servers' GC collects them."""
    cutoff = time.time() - retention
    async with store.write() as session:
        result = await session.execute(
            delete(FV).where(FV.state == DELETED, FV.deleted_at < cutoff)
            .execution_options(synchronize_session=False))
    return result.rowcount or 0
