"""Explicit folders: ``POST /folders``, ``GET /folders``, ``DELETE /folders`` (S3 buckets and ``dir/``
markers, a web page's "new folder").

Folders used to be implied by file paths only (GFS §2.3's flat namespace). A folder now exists when it is
**explicit** (a row of ``folders``), or is implied by a live file below it, or by an explicit folder below
it. An explicit folder is a folder for the "a name is a file or a folder" rule (``shared/paths.py``): a
file cannot be committed at ``p`` while an explicit folder is at ``p`` or below it (``leader/txns.py``,
``leader/version_sql.py``: ``IS_FOLDER``), and a folder cannot be created at ``p`` while a live file is at
``p`` or above it. Files below an explicit folder are fine; rename moves explicit folders with the files
(``leader/namespace.py``).

Concurrency. On SQLite every write holds the store's write lock, so each of these is serial with every
commit. On PostgreSQL a creation locks the pending and committed rows at ``p`` and at its ancestors (one
statement, id order, as a commit's ``LOCK_RELATED`` locks them) before it looks for a live file: a
concurrent commit of a file at one of those names holds its own pending row's lock, so the two serialize,
and whichever goes second sees the other (the commit checks for explicit folders in a statement after
its lock). A deletion needs no lock: no commit depends on an explicit folder *above* it.
"""

from __future__ import annotations

import time

from sqlalchemy import bindparam, delete, exists, literal, select
from sqlalchemy.exc import IntegrityError

from leader.store import WRITE_RETRIES, Store
from leader.version_sql import COMMITTED, FILE_VERSIONS, FOLDERS, LIVE_BELOW, LIVE_PATHS, PENDING
from shared.errors import Conflict, NotFound, Unavailable
from shared.paths import ancestors_of

_C = FILE_VERSIONS.c
_F = FOLDERS.c


def _path():
    return bindparam("path", type_=_F.path.type)


FOLDER_ROW = select(_F.path, _F.created_at).where(_F.path == _path())
# Whether an explicit folder lies below folder ``path`` (a range on the primary key).
EXPLICIT_BELOW = select(literal(True)).where(exists().where(_F.path >= _path() + "/", _F.path < _path() + "0"))
# The pending and committed rows of ``paths``, locked in id order (PostgreSQL; see the module docstring).
LOCK_FILE_ROWS = (select(_C.id).where(_C.path.in_(bindparam("paths", expanding=True)),
                                      _C.state.in_([PENDING, COMMITTED]))
                  .order_by(_C.id).with_for_update())
INSERT_FOLDER = FOLDERS.insert()
DELETE_FOLDER = delete(FOLDERS).where(_F.path == _path())


async def create_folder(store: Store, path: str) -> dict:
    """Make ``path`` (normalized) an explicit folder. Returns ``{"path", "created_at" (UNIX seconds),
    "created"}``: ``created`` is False (and ``created_at`` the first creation's) when it was explicit
    already. Raises :class:`Conflict` (409) when a live file is at ``path`` or at one of its ancestors,
    :class:`Unavailable` (503) when SQL fails."""
    names = [*ancestors_of(path), path]
    for _ in range(WRITE_RETRIES):
        try:
            async with store.write_conn() as conn:
                await conn.execute(LOCK_FILE_ROWS, {"paths": names})
                row = (await conn.execute(FOLDER_ROW, {"path": path})).first()
                if row is not None:
                    return {"path": path, "created_at": row.created_at, "created": False}
                files = set((await conn.execute(LIVE_PATHS, {"paths": names})).scalars())
                file = next((n for n in names if n in files), None)
                if file == path:
                    raise Conflict(f"{path!r} is a file, so it cannot be created as a folder")
                if file is not None:
                    raise Conflict(f"{file!r} is a file, so the folder {path!r} cannot be created below it")
                now = time.time()
                await conn.execute(INSERT_FOLDER, {"path": path, "created_at": now})
                return {"path": path, "created_at": now, "created": True}
        except IntegrityError:
            continue  # a concurrent creation of the same folder won: the next round answers its row
    raise Unavailable(f"could not create folder {path!r}: too many concurrent writers")


async def folder_state(store: Store, path: str) -> dict:
    """``{"path", "explicit", "created_at" (UNIX seconds, None unless explicit), "empty"}`` of folder
    ``path`` (normalized); ``empty``: no live file and no explicit folder below it. Raises
    :class:`NotFound` (404) when the folder is neither explicit nor implied (nothing lives below it)."""
    async with store.read_conn() as conn:
        row = (await conn.execute(FOLDER_ROW, {"path": path})).first()
        holds = ((await conn.execute(LIVE_BELOW, {"path": path})).first() is not None
                 or (await conn.execute(EXPLICIT_BELOW, {"path": path})).first() is not None)
    if row is None and not holds:
        raise NotFound(f"no such folder: {path!r}")
    return {"path": path, "explicit": row is not None, "created_at": None if row is None else row.created_at,
            "empty": not holds}


async def delete_folder(store: Store, path: str, only_if_empty: bool = True) -> None:
    """Drop the explicit record of folder ``path`` (normalized); what lives below it stays (the folder is
    then implied by it, if anything). Raises :class:`NotFound` (404) when ``path`` is not an explicit
    folder, and with ``only_if_empty`` :class:`Conflict` (409) when a live file or an explicit folder is
    below it."""
    async with store.write_conn() as conn:
        if (await conn.execute(FOLDER_ROW, {"path": path})).first() is None:
            raise NotFound(f"{path!r} is not an explicit folder")
        if only_if_empty:
            if (await conn.execute(LIVE_BELOW, {"path": path})).first() is not None:
                raise Conflict(f"folder {path!r} is not empty: files live below it")
            if (await conn.execute(EXPLICIT_BELOW, {"path": path})).first() is not None:
                raise Conflict(f"folder {path!r} is not empty: it holds folders")
        await conn.execute(DELETE_FOLDER, {"path": path})
