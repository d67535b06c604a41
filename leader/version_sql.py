"""The SQL of file versions: the version states, the Core statements of the two-phase commit and of the
lookups, and the one mapping of a row to :class:`VersionInfo` (by column name, never by position).

Statements are built once (the prepare insert once per batch size): SQLAlchemy caches their compiled
form, and Core on a plain connection skips the ORM's unit of work. Bind parameters are typed so that
PostgreSQL (asyncpg renders casts) infers the right types in a SELECT list.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson
from sqlalchemy import Integer, bindparam, delete, exists, false, func, literal, or_, select, union, union_all, update
from sqlalchemy.engine import Row
from sqlalchemy.sql.elements import BindParameter

from leader.models import ExpiredTxn, FileVersion, Folder
from shared.protocol.models import VersionInfo

PENDING, COMMITTED, DELETED = "pending", "committed", "deleted"
# A committed part of a multipart upload (leader/parts.py): never visible as a file, referenced for GC.
PART = "part"

FILE_VERSIONS = FileVersion.__table__
EXPIRED_TXNS = ExpiredTxn.__table__
FOLDERS = Folder.__table__
_C = FILE_VERSIONS.c
_E = EXPIRED_TXNS.c

# The columns version_info() reads.
INFO_COLUMNS = (_C.path, _C.version, _C.size, _C.sha256, _C.chunk_count, _C.chunk_size, _C.replication,
                _C.state, _C.created_at, _C.committed_at, _C.deleted_at, _C.etag, _C.content_type,
                _C.user_metadata, _C.object_headers)


def version_info(row: Row) -> VersionInfo:
    """The :class:`VersionInfo` of a row holding :data:`INFO_COLUMNS` (other columns are ignored);
    ``user_metadata`` and ``object_headers``, stored as JSON text (validated when written), are answered
    parsed."""
    m = row._mapping
    metadata, headers = m["user_metadata"], m["object_headers"]
    return VersionInfo(
        path=m["path"], version=m["version"], size=m["size"], sha256=m["sha256"], chunks=m["chunk_count"],
        chunk_size=m["chunk_size"], replication=m["replication"], state=m["state"],
        created_at=m["created_at"], committed_at=m["committed_at"], deleted_at=m["deleted_at"],
        etag=m["etag"], content_type=m["content_type"],
        user_metadata=None if metadata is None else orjson.loads(metadata),
        object_headers=None if headers is None else orjson.loads(headers),
    )


def _typed(name: str, column: str | None = None) -> BindParameter:
    """A bind parameter ``name`` typed as the ``file_versions`` column ``column`` (default: ``name``)."""
    return bindparam(name, type_=_C[column or name].type)


def _txn() -> BindParameter:
    return _typed("t", "txn_id")


def _paths() -> BindParameter:
    return bindparam("paths", expanding=True)


async def live_version_exists(conn: Any, path: str, exclude_id: int | None = None) -> bool:
    """Whether ``path`` has a committed version (other than row ``exclude_id``); ``conn`` is a Core
    connection or an ORM session inside the caller's transaction."""
    q = select(_C.id).where(_C.path == path, _C.state == COMMITTED)
    if exclude_id is not None:
        q = q.where(_C.id != exclude_id)
    return (await conn.execute(q.limit(1))).first() is not None


# ---------------------------------------------------------------- prepare (phase 2)

# Columns a prepare sends per version; ``version`` and ``state`` are computed in SQL.
NEW_VERSION_COLUMNS = ("path", "size", "sha256", "chunk_size", "replication", "chunk_count", "chunk_digests",
                       "txn_id", "create_only", "if_match", "created_at", "etag", "content_type", "user_metadata",
                       "object_headers")
# Versions in one INSERT statement: SQLite allows 500 terms in a compound SELECT.
ROWS_PER_INSERT = 256


@functools.lru_cache(maxsize=ROWS_PER_INSERT)
def insert_pending(n: int):
    """``INSERT ... SELECT ... RETURNING txn_id, version`` of ``n`` pending versions, in one statement.

    Binds ``<column>_<i>`` for each of :data:`NEW_VERSION_COLUMNS` and ``ordinal_<i>`` (1 for the first
    version of its path in this statement, 2 for the second, ...) per version ``i``. Each version gets
    ``ordinal + max(version)`` over every row of its path, both databases reading the table as it was
    when the statement began. A version whose transaction id expired is not inserted (no row returned)."""
    rows = union_all(*[
        select(*[_typed(f"{name}_{i}", name).label(name) for name in NEW_VERSION_COLUMNS],
               bindparam(f"ordinal_{i}", type_=Integer).label("ordinal"))
        for i in range(n)
    ])
    new = rows.subquery("incoming")
    top = (select(func.coalesce(func.max(_C.version), 0)).where(_C.path == new.c.path)
           .correlate(new).scalar_subquery())
    source = (select(*[new.c[name] for name in NEW_VERSION_COLUMNS], (top + new.c.ordinal).label("version"),
                     literal(PENDING, _C.state.type).label("state"))
              .where(~exists().where(_E.txn_id == new.c.txn_id)))
    return (FILE_VERSIONS.insert()
            .from_select([*NEW_VERSION_COLUMNS, "version", "state"], source)
            .returning(_C.txn_id, _C.version))


LIVE_PATHS = select(_C.path).where(_C.path.in_(_paths()), _C.state == COMMITTED).distinct()
# Whether a transaction id was ever prepared (and is still known): a version row or an expiry record.
TXN_ID_USED = select(or_(exists().where(_C.txn_id == _txn()), exists().where(_E.txn_id == _txn())))

# ---------------------------------------------------------------- commit (phase 4) and abort

TXN_HEAD = select(_C.id, _C.path, _C.create_only, _C.if_match, _C.state).where(_C.txn_id == _txn())
# Every row of a path, locked in id order (PostgreSQL; see LOCK_RELATED).
LOCK_PATH = select(_C.id).where(_C.path == _typed("path")).order_by(_C.id).with_for_update()
TXN_ROW = select(*INFO_COLUMNS, _C.id, _C.create_only, _C.if_match).where(_C.txn_id == _txn()).with_for_update()
COMMIT_ROW = (update(FILE_VERSIONS).where(_C.id == _typed("row_id", "id"))
              .values(state=COMMITTED, committed_at=_typed("now", "committed_at")).returning(*INFO_COLUMNS))
DELETE_ROW = delete(FILE_VERSIONS).where(_C.id == _typed("row_id", "id"))
TXN_EXPIRED = select(_E.txn_id).where(_E.txn_id == _txn())

# ---------------------------------------------------------------- expiry

# The pending sweep: drop pending versions created before ``cutoff``, naming their transactions.
SWEEP_PENDING = (delete(FILE_VERSIONS).where(_C.state == PENDING, _C.created_at < _typed("cutoff", "created_at"))
                 .returning(_C.txn_id))
EXPIRED_AMONG = select(_E.txn_id).where(_E.txn_id.in_(bindparam("ts", expanding=True)))
RECORD_EXPIRED = EXPIRED_TXNS.insert()
PURGE_EXPIRED = delete(EXPIRED_TXNS).where(_E.expired_at < bindparam("cutoff", type_=_E.expired_at.type))

# ---------------------------------------------------------------- lookups

LATEST = (select(*INFO_COLUMNS, _C.chunk_digests).where(_C.path == _typed("path"), _C.state == COMMITTED)
          .order_by(_C.version.desc()).limit(1))
EXACT = select(*INFO_COLUMNS, _C.chunk_digests).where(
    _C.path == _typed("path"), _C.state == COMMITTED, _C.version == _typed("version"))
_LATER = FILE_VERSIONS.alias("later")
LATEST_MANY = (
    select(*INFO_COLUMNS, _C.chunk_digests)
    .where(_C.path.in_(_paths()), _C.state == COMMITTED,
           _C.version == select(func.max(_LATER.c.version))
           .where(_LATER.c.path == _C.path, _LATER.c.state == COMMITTED).scalar_subquery())
)
EXACT_MANY = select(*INFO_COLUMNS, _C.chunk_digests).where(
    _C.path.in_(_paths()), _C.state == COMMITTED, _C.version == _typed("version"))
# The same lookups without the chunk lists (a batch decides first which files it will send whole), and
# the chunk lists of chosen rows by id.
LATEST_MANY_INFO = (
    select(*INFO_COLUMNS, _C.id)
    .where(_C.path.in_(_paths()), _C.state == COMMITTED,
           _C.version == select(func.max(_LATER.c.version))
           .where(_LATER.c.path == _C.path, _LATER.c.state == COMMITTED).scalar_subquery())
)
EXACT_MANY_INFO = select(*INFO_COLUMNS, _C.id).where(
    _C.path.in_(_paths()), _C.state == COMMITTED, _C.version == _typed("version"))
DIGESTS_OF = select(_C.id, _C.chunk_digests).where(_C.id.in_(bindparam("ids", expanding=True)))
COMMITTED_VERSIONS = (select(*INFO_COLUMNS).where(_C.path == _typed("path"), _C.state == COMMITTED)
                      .order_by(_C.version))


# ---------------------------------------------------------------- one name, one kind: file or folder
# A path is never a live file and a folder at once (shared/paths.py): a commit of ``a`` is refused while a
# file below ``a/`` is live or an explicit folder (``folders``) is at ``a`` or below it, and a commit of
# ``a/b`` while a file ``a`` (any ancestor) is live. The rows "below" ``p`` are a range on ``path``
# (``p/`` <= path < ``p0``, ``'0'`` following ``'/'``), the rows "above" an IN over
# ``shared.paths.ancestors_of``; the btrees on ``path`` serve both.
_BELOW = FILE_VERSIONS.alias("below")
_OWN = FILE_VERSIONS.alias("own")
_EXPLICIT = FOLDERS.alias("explicit")


def _live_below(path):
    """SQL: a committed version lies below the folder named by the SQL expression ``path``."""
    return exists().where(unindexed(_BELOW.c.state) == COMMITTED, _BELOW.c.path >= path + "/",
                          _BELOW.c.path < path + "0")


def _explicit_at_or_below(path):
    """SQL: an explicit folder is at the SQL expression ``path`` or below it (two primary-key probes)."""
    return or_(exists().where(_EXPLICIT.c.path == path),
               exists().where(_EXPLICIT.c.path >= path + "/", _EXPLICIT.c.path < path + "0"))


def _is_folder(path):
    """SQL: the name ``path`` is a folder, so it cannot be a file: a live file lies below it, or an
    explicit folder is at it or below it."""
    return or_(_live_below(path), _explicit_at_or_below(path))


def unindexed(column):
    """``column || ''``: the same value, but an expression no index serves, so that the planner walks the
    path range of ``ix_file_versions_path_state_version`` rather than every committed row of
    ``ix_file_versions_state_created_at``. Without statistics SQLite prefers the equality on ``state``,
    and that made each prepare and commit check O(files): 0.7 ms per file at 5,000 files, flat at
    0.14 ms with this (``tests/test_query_plans.py`` checks the plans). Works in PostgreSQL alike."""
    return column.concat("")


# Pending plain writes (neither create-only nor conditional) among ``ts``; not locked yet (LOCK_RELATED).
# The paths of the pending versions of ``ts``: what their commits will change (read leases are revoked on
# them before the commit's transaction begins, leader/read_leases.py).
PENDING_PATHS = select(_C.path).where(_C.txn_id.in_(bindparam("ts", expanding=True)), _C.state == PENDING).distinct()
PLAIN_PENDING = select(_C.id, _C.path, _C.txn_id).where(
    _C.txn_id.in_(bindparam("ts", expanding=True)), _C.state == PENDING, _C.create_only == false(),
    _C.if_match.is_(None))

# What a commit locks before it decides, in one statement in id order (PostgreSQL; SQLite serializes
# writers anyway): the rows ``ids`` it commits, every row of ``paths`` (a conditional commit's own path),
# the pending and committed rows of ``ancestors``, and the pending rows below the rows ``ids``. Two commits
# that could make one name a file and a folder (``a`` and ``a/b``) each lock the other's pending row, so
# they serialize and the second sees the first committed; one ordered statement cannot deadlock with
# another. Answers ``id, path, state`` as they are once locked.
_RELATED = union(
    select(_C.id).where(_C.id.in_(bindparam("ids", expanding=True))),
    select(_C.id).where(_C.path.in_(bindparam("paths", expanding=True))),
    select(_C.id).where(_C.path.in_(bindparam("ancestors", expanding=True)), _C.state.in_([PENDING, COMMITTED])),
    select(_BELOW.c.id).select_from(_OWN).join(
        _BELOW, (_BELOW.c.path >= _OWN.c.path + "/") & (_BELOW.c.path < _OWN.c.path + "0"))
    .where(_OWN.c.id.in_(bindparam("ids", expanding=True)), _BELOW.c.state == PENDING),
)
LOCK_RELATED = (select(_C.id, _C.path, _C.state).where(_C.id.in_(select(_RELATED.subquery().c.id)))
                .order_by(_C.id).with_for_update())

# Commit the pending rows ``ids`` but those whose path is a folder (a live file below it, an explicit folder
# at it or below it; the caller refuses those). Evaluated after LOCK_RELATED, in a statement of its own, so
# on PostgreSQL it sees a folder created by a transaction that held one of the locked rows.
COMMIT_IDS = (
    update(FILE_VERSIONS)
    .where(_C.id.in_(bindparam("ids", expanding=True)), _C.state == PENDING, ~_is_folder(_C.path))
    .values(state=COMMITTED, committed_at=_typed("now", "committed_at"))
    .returning(*INFO_COLUMNS, _C.txn_id)
)
DELETE_IDS = delete(FILE_VERSIONS).where(_C.id.in_(bindparam("ids", expanding=True)))
# Whether a committed version lies below folder ``path``.
LIVE_BELOW = select(literal(True)).where(_live_below(_typed("path")))
# Whether ``path`` is a folder: a committed version below it, or an explicit folder at it or below it.
IS_FOLDER = select(literal(True)).where(_is_folder(_typed("path")))


@functools.lru_cache(maxsize=ROWS_PER_INSERT)
def folders_among(n: int):
    """``SELECT path`` of those of the binds ``asked_0`` ... ``asked_<n-1>`` that are folders (a committed
    version below them, or an explicit folder at them or below them): a prepare's fail-fast check, at
    most ``ROWS_PER_INSERT`` per statement."""
    asked = union_all(*[select(_typed(f"asked_{i}", "path").label("path")) for i in range(n)]).subquery("asked")
    return select(asked.c.path).where(_is_folder(asked.c.path))


# ---------------------------------------------------------------- conditional writes (RFC 9110 §13.1.1)

# The SHA-256 of the latest committed version of each of ``paths``.
LATEST_SHAS = select(_C.path, _C.sha256).where(
    _C.path.in_(_paths()), _C.state == COMMITTED,
    _C.version == select(func.max(_LATER.c.version))
    .where(_LATER.c.path == _C.path, _LATER.c.state == COMMITTED).scalar_subquery())
# The SHA-256 of the latest committed version of ``path`` other than row ``row_id`` (-1: any).
LIVE_SHA = (select(_C.sha256).where(_C.path == _typed("path"), _C.state == COMMITTED, _C.id != _typed("row_id", "id"))
            .order_by(_C.version.desc()).limit(1))
