"""The namespace over file versions: folder listings, rename and delete.

Folders are implied by file paths (GFS §2.3's flat namespace with full path names), and a name is never
a live file and a folder at once (``shared/paths.py``; commits enforce it in ``leader/txns.py``, renames
here). Everything under a folder is found by a range on ``path`` (``path >= 'a/b/' AND path < 'a/b0'``,
``'0'`` being the character after ``'/'``), which a plain btree serves in SQLite and PostgreSQL alike; no
``LIKE``.
"""

from __future__ import annotations

import time

from sqlalchemy import and_, func, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from leader.models import FileVersion as FV
from leader.store import WRITE_RETRIES, Store
from leader.txns import if_match_failed, is_a_file
from leader.version_sql import COMMITTED, DELETED, LIVE_SHA, LOCK_PATH, unindexed
from shared.errors import BadRequest, Conflict, NotFound
from shared.paths import ancestors_of
from shared.protocol.rules import if_match_allows


def under(prefix_folder: str):
    """SQL condition "path is below folder ``prefix_folder``" (any path for the root ``""``)."""
    if prefix_folder == "":
        return FV.path != ""
    return and_(FV.path >= prefix_folder + "/", FV.path < prefix_folder + "0")


async def live_files(session: AsyncSession, condition) -> list[Row]:
    """Rows ``path, version, size, created_at`` of the latest committed version of every path matching
    ``condition``, sorted by path."""
    latest = (
        select(FV.path.label("path"), func.max(FV.version).label("version"))
        .where(unindexed(FV.state) == COMMITTED, condition)  # the path's index serves it, not state's
        .group_by(FV.path)
        .subquery()
    )
    q = (
        select(FV.path, FV.version, FV.size, FV.created_at)
        .join(latest, and_(FV.path == latest.c.path, FV.version == latest.c.version))
        .order_by(FV.path)
    )
    return list((await session.execute(q)).all())


async def list_folder(store: Store, folder: str, recursive: bool, readable: list[str] | None = None) -> list[dict]:
    """:class:`shared.protocol.ListEntry` dicts for ``folder`` (``""`` is the root).

    Direct listing: files directly in the folder, and one ``"dir"`` entry per next path segment of deeper
    files, whose size is the total size (bytes) of the live files below it. Recursive: every live file
    below, ``name`` being its path relative to the folder. With ``readable`` (path prefixes an access key
    may read), only the files under one of them count, for the entries and for the folders' sizes alike.
    Raises :class:`NotFound` when a non-root folder holds no (readable) live file; the root may be empty.
    """
    async with store.read() as session:
        rows = await live_files(session, under(folder))
    base = folder + "/" if folder else ""
    rows = [r for r in rows if r.path.startswith(base)  # exact, whatever the SQL collation
            and (readable is None or any(r.path.startswith(p) for p in readable))]
    if not rows and folder:
        raise NotFound(f"folder {folder!r} has no files")
    entries: list[dict] = []
    dirs: dict[str, int] = {}
    for row in rows:
        rel = row.path[len(base):]
        if recursive or "/" not in rel:
            entries.append({"name": rel, "path": row.path, "type": "file", "size": row.size,
                            "version": row.version, "created_at": row.created_at})
        else:
            first = rel.split("/", 1)[0]
            dirs[first] = dirs.get(first, 0) + row.size
    entries += [{"name": d, "path": base + d, "type": "dir", "size": s, "version": None, "created_at": None}
                for d, s in dirs.items()]
    entries.sort(key=lambda e: e["path"])
    return entries


async def rename(store: Store, src: str, dst: str) -> int:
    """Rename a file, or a folder (every live file under ``src/``); return how many files moved.

    Every committed version moves with its content; tombstones and pending versions stay. When ``dst``
    has old rows (tombstones), the moved versions are renumbered above them so ``(path, version)`` stays
    unique. Raises :class:`BadRequest` (same path, folder into itself), :class:`NotFound` (no live
    ``src``), :class:`Conflict` (a live file at or under ``dst``, a live file above ``dst``, or a
    concurrent writer kept winning).
    """
    if src == dst:
        raise BadRequest("src and dst are the same path")
    if dst.startswith(src + "/"):
        raise BadRequest(f"cannot move {src!r} into itself ({dst!r})")
    # Every path under src and dst may change: the whole manifest cache is bypassed while the rename
    # runs and dropped when it ended (leader/manifest_cache.py).
    store.cache.begin_write_all()
    try:
        for _ in range(WRITE_RETRIES):
            try:
                async with store.write() as session:
                    return await _rename_once(session, src, dst)
            except IntegrityError:
                continue  # a writer took a version number at a destination path meanwhile
    finally:
        store.cache.end_write_all()
    raise Conflict(f"rename {src!r} -> {dst!r} kept colliding with concurrent writes; retry")


async def _rename_once(session: AsyncSession, src: str, dst: str) -> int:
    is_file = (await session.execute(
        select(FV.id).where(FV.path == src, FV.state == COMMITTED).limit(1))).first() is not None
    src_cond = FV.path == src if is_file else under(src)
    moving = (await session.execute(
        select(FV.id, FV.path, FV.version).where(FV.state == COMMITTED, src_cond))).all()
    if not is_file:
        moving = [m for m in moving if m.path.startswith(src + "/")]
    if not moving:
        raise NotFound(f"no such file or folder: {src!r}")
    target = {p: dst + p[len(src):] for p in {m.path for m in moving}}

    occupied = (await session.execute(
        select(FV.path).where(FV.state == COMMITTED, (FV.path == dst) | under(dst)).limit(1))).first()
    if occupied is not None:
        kind = "" if occupied.path == dst else ": it is a folder"
        raise Conflict(f"destination {dst!r} exists{kind}")
    file_above = (await session.execute(
        select(FV.path).where(FV.state == COMMITTED, FV.path.in_(ancestors_of(dst))).limit(1))).first()
    if file_above is not None:  # (never one of the moving files: dst is not below src)
        raise is_a_file(file_above.path, dst)

    dst_cond = FV.path == dst if is_file else under(dst)
    tops = {row.path: row.top for row in (await session.execute(
        select(FV.path, func.max(FV.version).label("top")).where(dst_cond).group_by(FV.path))).all()}
    changes = [{"id": m.id, "path": target[m.path], "version": m.version + (tops.get(target[m.path]) or 0)}
               for m in moving]
    await session.execute(update(FV), changes)
    return len(target)


async def delete_file(store: Store, path: str, if_match: str | None = None) -> int:
    """Tombstone every committed version of ``path`` (state ``deleted``, ``deleted_at`` now); return how
    many. Chunk garbage collection is separate.

    ``if_match`` (``"*"`` or comma-separated SHA-256s, RFC 9110 §13.1.1) is checked against the live
    version in the same transaction, the path's rows locked first (as a conditional commit locks them).
    Raises :class:`PreconditionFailed` (412) when it does not match (or nothing is live), else
    :class:`NotFound` (404) when nothing is live."""
    store.cache.begin_write(path)  # the path's cache entries stay bypassed until the delete ended
    try:
        async with store.write() as session:
            if if_match is not None:
                await session.execute(LOCK_PATH, {"path": path})
                current = (await session.execute(LIVE_SHA, {"path": path, "row_id": -1})).scalar()
                if not if_match_allows(if_match, current):
                    raise if_match_failed(path, current)
            result = await session.execute(
                update(FV).where(FV.path == path, FV.state == COMMITTED)
                .values(state=DELETED, deleted_at=time.time()).execution_options(synchronize_session=False))
    finally:
        store.cache.end_write(path)
    if not result.rowcount:
        raise NotFound(f"no such file: {path!r}")
    return result.rowcount
