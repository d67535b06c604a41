"""Where the parts of a multipart upload live, and the checks the two-phase commit makes for them.

A part is written like any file, through the leader's half of the 2PC (``leader/txns.py``): its prepare
records a pending row of ``file_versions``, its commit makes it state :data:`PART` instead of
``committed``. The row's path is :func:`part_path`: ``"\\x7f/multipart/<upload_id>/<part number, 5
digits>"``. U+007F is a control character that ``shared.paths.normalize_path`` refuses, so no file path
can equal such a path or lie above or below it, and every read of the namespace (listings, scans, stat,
manifests, versions, trash, fsck, the file-or-folder checks) asks for ``committed`` or ``deleted`` rows,
so a part is never a file. A part number uploaded again is the next version of its path; the latest
:data:`PART` version is the part. Pending part rows expire with the pending sweep like any other; GC
counts :data:`PART` rows as references (``leader/gc.py``).

Locks (PostgreSQL; on SQLite the store's write lock serializes every write): whoever deletes parts (an
abort, a completion, the expiry) deletes the upload's row first, in the same transaction, and whoever
relies on the parts (a part's commit, a completion's prepare) holds that row share-locked
(:data:`LOCK_UPLOAD`). So no part row disappears while a transaction that checked the upload runs, and a
part committed after an abort or a completion began sees the upload gone.
"""

from __future__ import annotations

from sqlalchemy import bindparam, delete, select, update

from leader.models import MultipartUpload
from leader.version_sql import FILE_VERSIONS, INFO_COLUMNS, PART, PENDING
from shared.errors import BadRequest, NotFound, RingFSError
from shared.protocol.rules import MAX_PART_NUMBER, UPLOAD_ID_RE

# The folder-like root of every part path; "0" is the character after "/", so [root, root[:-1] + "0") is
# exactly the paths below it.
PART_ROOT = "\x7f/multipart/"
_NUMBER_DIGITS = len(str(MAX_PART_NUMBER))  # zero-padded, so part paths sort as part numbers

UPLOADS = MultipartUpload.__table__
_U = UPLOADS.c
_C = FILE_VERSIONS.c


def part_prefix(upload_id: str) -> str:
    """``"\\x7f/multipart/<upload_id>/"``: every part path of the upload starts with it."""
    return f"{PART_ROOT}{upload_id}/"


def part_path(upload_id: str, part_number: int) -> str:
    """The ``file_versions.path`` of part ``part_number`` (1..``MAX_PART_NUMBER``) of ``upload_id``."""
    return f"{part_prefix(upload_id)}{part_number:0{_NUMBER_DIGITS}d}"


def part_range(upload_id: str) -> tuple[str, str]:
    """``(lo, hi)``: the upload's part paths are exactly those with ``lo <= path < hi``."""
    prefix = part_prefix(upload_id)
    return prefix, prefix[:-1] + "0"


def is_part_path(path: str) -> bool:
    """Whether ``path`` is a part's (below :data:`PART_ROOT`), never a file's."""
    return path.startswith(PART_ROOT)


def parse_part_path(path: str) -> tuple[str, int] | None:
    """``(upload_id, part_number)`` of a :func:`part_path`, or None for any other path (a file's)."""
    if not path.startswith(PART_ROOT):
        return None
    upload_id, _, number = path[len(PART_ROOT):].partition("/")
    if not UPLOAD_ID_RE.fullmatch(upload_id) or len(number) != _NUMBER_DIGITS or not number.isdigit():
        return None
    return upload_id, int(number)


def no_such_upload(upload_id: str, meanwhile: bool = False) -> NotFound:
    """404: ``upload_id`` names no upload (never created, or aborted, expired or completed ``meanwhile``)."""
    when = " (it was aborted, expired or completed meanwhile)" if meanwhile else ""
    return NotFound(f"no such upload: {upload_id[:80]!r}{when}")


def _upload_id():
    return bindparam("upload_id", type_=_U.upload_id.type)


# The uploads among ``ids`` (a prepare's parts' uploads) and the path each will write.
UPLOADS_NAMED = select(_U.upload_id, _U.path).where(_U.upload_id.in_(bindparam("ids", expanding=True)))
UPLOAD_ROW = select(_U.upload_id, _U.path, _U.created_at, _U.content_type, _U.user_metadata, _U.object_headers).where(
    _U.upload_id == _upload_id())
# The upload's row, share-locked (see the module docstring): its parts stay while the transaction runs.
LOCK_UPLOAD = UPLOAD_ROW.with_for_update(read=True)
# Drop the upload's row; answers it when it was there. Always before DELETE_PARTS (the module docstring).
DELETE_UPLOAD = delete(UPLOADS).where(_U.upload_id == _upload_id()).returning(_U.upload_id)
# Every row of the upload's parts, pending or committed: binds ``lo``, ``hi`` of part_range().
DELETE_PARTS = delete(FILE_VERSIONS).where(_C.path >= bindparam("lo", type_=_C.path.type),
                                           _C.path < bindparam("hi", type_=_C.path.type))
# A part's commit: its pending row becomes a part.
COMMIT_PART_ROW = (update(FILE_VERSIONS).where(_C.id == bindparam("row_id", type_=_C.id.type), _C.state == PENDING)
                   .values(state=PART, committed_at=bindparam("now", type_=_C.committed_at.type))
                   .returning(*INFO_COLUMNS))


async def drop_upload(conn, upload_id: str) -> bool:
    """Delete upload ``upload_id`` and every row of its parts (pending and committed) in the caller's
    transaction ``conn``; whether the upload was there. Its parts' chunks are then unreferenced (unless
    another version lists them) and the chunk servers' GC collects them."""
    if (await conn.execute(DELETE_UPLOAD, {"upload_id": upload_id})).first() is None:
        return False
    lo, hi = part_range(upload_id)
    await conn.execute(DELETE_PARTS, {"lo": lo, "hi": hi})
    return True


async def upload_refusals(conn, asked: list[tuple[str, str]]) -> list[RingFSError | None]:
    """Per ``(upload_id, path)`` of ``asked`` (the parts of a prepare, ``path`` normalized), in order, why
    that part may not be prepared, or None: :class:`NotFound` (404) when the upload does not exist, or
    :class:`BadRequest` (400) when it writes another path. One statement."""
    ids = sorted({upload_id for upload_id, _ in asked})
    paths = dict((await conn.execute(UPLOADS_NAMED, {"ids": ids})).tuples().all()) if ids else {}
    out: list[RingFSError | None] = []
    for upload_id, path in asked:
        if upload_id not in paths:
            out.append(no_such_upload(upload_id))
        elif paths[upload_id] != path:
            out.append(BadRequest(f"upload {upload_id!r} writes {paths[upload_id]!r}, not {path!r}"))
        else:
            out.append(None)
    return out
