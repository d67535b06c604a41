"""The namespace over file versions: folder listings, rename and delete.

Folders are implied by file paths (GFS §2.3's flat namespace with full path names) or created explicitly
(``leader/folders.py``), and a name is never a live file and a folder at once (``shared/paths.py``;
commits enforce it in ``leader/txns.py``, renames here). Everything under a folder is found by a range on
``path`` (``path >= 'a/b/' AND path < 'a/b0'``, ``'0'`` being the character after ``'/'``), which a plain
btree serves in SQLite and PostgreSQL alike; no ``LIKE``.
"""

from __future__ import annotations

import bisect
import itertools
import time

from sqlalchemy import and_, bindparam, delete, func, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from leader.models import FileVersion as FV
from leader.models import Folder
from leader.store import WRITE_RETRIES, Store
from leader.txns import if_match_failed, is_a_file
from leader.version_sql import COMMITTED, DELETED, LIVE_SHA, LOCK_PATH, unindexed
from shared.errors import BadRequest, Conflict, NotFound
from shared.paths import ancestors_of
from shared.protocol.rules import if_match_allows


def under(prefix_folder: str, column=FV.path):
    """SQL condition "``column`` (a path column, ``file_versions.path`` by default) is below folder
    ``prefix_folder``" (any path for the root ``""``)."""
    if prefix_folder == "":
        return column != ""
    return and_(column >= prefix_folder + "/", column < prefix_folder + "0")


def _at_or_under(folder: str, column):
    """SQL condition "``column`` is ``folder`` or below it"."""
    return (column == folder) | under(folder, column)


def shows_folder(folder: str, readable: list[str] | None) -> bool:
    """Whether a listing for a key that may read the path prefixes ``readable`` (None: everything) shows
    the explicit folder ``folder``: a grant covers it (``folder + "/"`` starts with one) or lies inside it."""
    if readable is None:
        return True
    key = folder + "/"
    return any(key.startswith(p) or p.startswith(key) for p in readable)


async def live_files(session: AsyncSession, condition) -> list[Row]:
    """Rows ``path, version, size, created_at, committed_at, sha256, versions`` of the latest committed
    version of every path matching ``condition``, sorted by path; ``versions`` counts its committed ones."""
    latest = (
        select(FV.path.label("path"), func.max(FV.version).label("version"), func.count().label("versions"))
        .where(unindexed(FV.state) == COMMITTED, condition)  # the path's index serves it, not state's
        .group_by(FV.path)
        .subquery()
    )
    q = (
        select(FV.path, FV.version, FV.size, FV.created_at, FV.committed_at, FV.sha256, latest.c.versions)
        .join(latest, and_(FV.path == latest.c.path, FV.version == latest.c.version))
        .order_by(FV.path)
    )
    return list((await session.execute(q)).all())


async def list_folder(store: Store, folder: str, recursive: bool, readable: list[str] | None = None,
                      folders: bool = False) -> list[dict]:
    """:class:`shared.protocol.ListEntry` dicts for ``folder`` (``""`` is the root), sorted by path.

    Direct listing: files directly in the folder, and one ``"dir"`` entry per next path segment of deeper
    files and of explicit folders below (``leader/folders.py``), whose size is the total size (bytes) of
    the live files below it (0 for none) and whose ``created_at`` is the explicit folder's creation time
    when it is one (else None). Recursive: every live file below, ``name`` being its path relative to the
    folder, plus, with ``folders``, every explicit folder below as a ``"dir"`` entry (size: the live files
    below it). With ``readable`` (path prefixes an access key may read), only the files under one of them
    count, for the entries and for the folders' sizes alike, and an explicit folder only when one of them
    covers it or lies inside it (:func:`shows_folder`).

    Raises :class:`NotFound` when a non-root folder holds no (readable) live file and no shown explicit
    folder, unless it is itself an explicit folder shown to the key (then it lists empty); the root may
    be empty."""
    async with store.read() as session:
        rows = await live_files(session, under(folder))
        explicit = (await session.execute(select(Folder.path, Folder.created_at)
                                          .where(under(folder, Folder.path)).order_by(Folder.path))).all()
        base = folder + "/" if folder else ""
        rows = [r for r in rows if r.path.startswith(base)  # exact, whatever the SQL collation
                and (readable is None or any(r.path.startswith(p) for p in readable))]
        explicit = [f for f in explicit if f.path.startswith(base) and shows_folder(f.path, readable)]
        if not rows and not explicit and folder:
            itself = (await session.execute(select(Folder.path).where(Folder.path == folder))).first()
            if itself is None or not shows_folder(folder, readable):
                raise NotFound(f"folder {folder!r} has no files")
            return []
    entries: list[dict] = []
    dirs: dict[str, int] = {}
    for row in rows:
        rel = row.path[len(base):]
        if recursive or "/" not in rel:
            entries.append({"name": rel, "path": row.path, "type": "file", "size": row.size,
                            "version": row.version, "created_at": row.created_at,
                            "committed_at": row.committed_at, "sha256": row.sha256,
                            "versions": row.versions})
        else:
            first = rel.split("/", 1)[0]
            dirs[first] = dirs.get(first, 0) + row.size
    if recursive:
        if folders:
            entries += _explicit_entries(base, explicit, rows)
    else:
        created = {f.path[len(base):]: f.created_at for f in explicit}
        for f in explicit:
            dirs.setdefault(f.path[len(base):].split("/", 1)[0], 0)
        entries += [{"name": d, "path": base + d, "type": "dir", "size": s, "version": None,
                     "created_at": created.get(d)} for d, s in dirs.items()]
    entries.sort(key=lambda e: e["path"])
    return entries


def _explicit_entries(base: str, explicit: list[Row], rows: list[Row]) -> list[dict]:
    """A recursive listing's ``"dir"`` entries of the explicit folders ``explicit`` below ``base``, each
    sized by the live files among ``rows`` (sorted by path) below it."""
    paths = [r.path for r in rows]
    sums = [0, *itertools.accumulate(r.size for r in rows)]
    out = []
    for f in explicit:
        lo, hi = bisect.bisect_left(paths, f.path + "/"), bisect.bisect_left(paths, f.path + "0")
        out.append({"name": f.path[len(base):], "path": f.path, "type": "dir", "size": sums[hi] - sums[lo],
                    "version": None, "created_at": f.created_at})
    return out


async def rename(store: Store, src: str, dst: str) -> int:
    """Rename a file, or a folder (every live file under ``src/`` and every explicit folder at ``src`` or
    under it); return how many files moved.

    Every committed version moves with its content; tombstones and pending versions stay. When ``dst``
    has old rows (tombstones), the moved versions are renumbered above them so ``(path, version)`` stays
    unique. Raises :class:`BadRequest` (same path, folder into itself), :class:`NotFound` (no live
    ``src`` file and no folder there), :class:`Conflict` (a live file or an explicit folder at or under
    ``dst``, a live file above ``dst``, or a concurrent writer kept winning).
    """
    if src == dst:
        raise BadRequest("src and dst are the same path")
    if dst.startswith(src + "/"):
        raise BadRequest(f"cannot move {src!r} into itself ({dst!r})")
    # Every path under src and dst may change: the whole manifest cache is bypassed while the rename
    # runs and dropped when it ended (leader/manifest_cache.py).
    store.cache.begin_write_all()
    try:
        await store.leases.revoke_all()
        for _ in range(WRITE_RETRIES):
            try:
                async with store.write() as session:
                    return await _rename_once(session, src, dst)
            except IntegrityError:
                continue  # a writer took a version number at a destination path meanwhile
    finally:
        store.cache.end_write_all()
    raise Conflict(f"rename {src!r} -> {dst!r} kept colliding with concurrent writes; retry")


# An explicit folder's new path, by its old one (an executemany of (old, new) pairs).
_MOVE_FOLDER = (update(Folder.__table__).where(Folder.__table__.c.path == bindparam("old_path"))
                .values(path=bindparam("new_path")))


async def _rename_once(session: AsyncSession, src: str, dst: str) -> int:
    is_file = (await session.execute(
        select(FV.id).where(FV.path == src, FV.state == COMMITTED).limit(1))).first() is not None
    src_cond = FV.path == src if is_file else under(src)
    moving = (await session.execute(
        select(FV.id, FV.path, FV.version).where(FV.state == COMMITTED, src_cond))).all()
    folders: list[str] = []
    if not is_file:
        moving = [m for m in moving if m.path.startswith(src + "/")]
        folders = [p for p in (await session.execute(
            select(Folder.path).where(_at_or_under(src, Folder.path)))).scalars()
            if p == src or p.startswith(src + "/")]
    if not moving and not folders:
        raise NotFound(f"no such file or folder: {src!r}")
    target = {p: dst + p[len(src):] for p in {m.path for m in moving}}

    occupied = (await session.execute(
        select(FV.path).where(FV.state == COMMITTED, (FV.path == dst) | under(dst)).limit(1))).first()
    if occupied is not None:
        kind = "" if occupied.path == dst else ": it is a folder"
        raise Conflict(f"destination {dst!r} exists{kind}")
    if (await session.execute(select(Folder.path).where(_at_or_under(dst, Folder.path)).limit(1))).first():
        raise Conflict(f"destination {dst!r} exists: it is a folder")
    file_above = (await session.execute(
        select(FV.path).where(FV.state == COMMITTED, FV.path.in_(ancestors_of(dst))).limit(1))).first()
    if file_above is not None:  # (never one of the moving files: dst is not below src)
        raise is_a_file(file_above.path, dst)

    if moving:
        dst_cond = FV.path == dst if is_file else under(dst)
        tops = {row.path: row.top for row in (await session.execute(
            select(FV.path, func.max(FV.version).label("top")).where(dst_cond).group_by(FV.path))).all()}
        changes = [{"id": m.id, "path": target[m.path], "version": m.version + (tops.get(target[m.path]) or 0)}
                   for m in moving]
        await session.execute(update(FV), changes)
    if folders:  # no explicit folder is at or under dst (checked above), so no new path collides
        await session.execute(_MOVE_FOLDER, [{"old_path": p, "new_path": dst + p[len(src):]} for p in folders])
    # WebDAV dead properties follow the path, whichever API renamed it (user API, S3, WebDAV, web page)
    from leader import dav_properties  # it builds on this module's path conditions
    await dav_properties.move_within(session, src, dst, copy=False, below=not is_file)
    return len(target)


async def delete_file(store: Store, path: str, if_match: str | None = None) -> tuple[int, float]:
    """Tombstone every committed version of ``path`` (state ``deleted``, ``deleted_at`` now); return how
    many and that ``deleted_at`` (UNIX seconds; S3 names its delete marker by it). Chunk garbage
    collection is separate.

    ``if_match`` (``"*"`` or comma-separated SHA-256s, RFC 9110 §13.1.1) is checked against the live
    version in the same transaction, the path's rows locked first (as a conditional commit locks them).
    Raises :class:`PreconditionFailed` (412) when it does not match (or nothing is live), else
    :class:`NotFound` (404) when nothing is live."""
    deleted_at = time.time()
    store.cache.begin_write(path)  # the path's cache entries stay bypassed until the delete ended
    try:
        await store.leases.revoke([path])
        async with store.write() as session:
            if if_match is not None:
                await session.execute(LOCK_PATH, {"path": path})
                current = (await session.execute(LIVE_SHA, {"path": path, "row_id": -1})).scalar()
                if not if_match_allows(if_match, current):
                    raise if_match_failed(path, current)
            result = await session.execute(
                update(FV).where(FV.path == path, FV.state == COMMITTED)
                .values(state=DELETED, deleted_at=deleted_at).execution_options(synchronize_session=False))
    finally:
        store.cache.end_write(path)
    if not result.rowcount:
        raise NotFound(f"no such file: {path!r}")
    return result.rowcount, deleted_at


async def delete_version(store: Store, path: str, version: int) -> str:
    """Remove version ``version`` of ``path`` for good, committed or in the trash (S3's DeleteObject with
    a ``versionId``, which AWS documents as permanent); return the state it had. When it was the latest,
    the next older committed version becomes the latest. Its chunks become unreferenced unless another
    version shares them, and chunk GC collects them after its grace period (``leader/gc.py``).

    Raises :class:`NotFound` when ``path`` has no committed or tombstoned version ``version``."""
    store.cache.begin_write(path)
    try:
        await store.leases.revoke([path])
        async with store.write() as session:
            await session.execute(LOCK_PATH, {"path": path})
            row = (await session.execute(
                delete(FV).where(FV.path == path, FV.version == version, FV.state.in_((COMMITTED, DELETED)))
                .returning(FV.state).execution_options(synchronize_session=False))).first()
    finally:
        store.cache.end_write(path)
    if row is None:
        raise NotFound(f"{path!r} has no version {version}")
    return row.state
