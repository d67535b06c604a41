"""An ordered scan of the namespace's keys for S3 listings: ``GET /scan`` (ListObjects, ListObjectsV2).

A **key** is a live file's path, or an explicit folder's path with ``"/"`` appended (folder ``a/b`` is key
``a/b/``, S3's folder marker). Keys are ordered by their UTF-8 bytes, which is Python's code-point order of
``str``, SQLite's BINARY collation and PostgreSQL's ``"C"`` (``leader.models.PathType``).

:func:`scan` answers, in key order, the keys that start with ``prefix`` (a plain string prefix, not
aligned on folders), come after ``after`` and at or after ``start``, and (with ``readable``) start with one
of those prefixes. With a ``delimiter``, a key whose rest after ``prefix`` holds the delimiter is rolled up
into its **common prefix** (``prefix`` + that rest up to and including the first delimiter), answered once
as one result; the scan then seeks past every key that starts with it, one indexed query per kind of key
(files, folders) whatever the number of keys inside, by starting again at :func:`successor` of it.

How the two kinds are walked, each in batches that stop early (``LIMIT``) on an index:

* Files: ``file_versions`` by a range on ``path`` in path order (``ix_file_versions_path_state_version``),
  the latest committed version of each path; a file's key is its path, so path order is key order.
  With ``history`` (ListObjectVersions), every path in the range with a committed or tombstoned version
  is a key, and its entry lists all those versions (:func:`_fetch_histories`).
* Folders: ``folders`` by a range on its primary key. Key order (``path + "/"``) differs from path order
  only between a folder and the folders that extend it with a character below ``"/"`` (``a-b/`` sorts
  before ``a/``, but ``a`` before ``a-b``), so a batch read in path order answers only the keys below its
  last row's key, which no folder not read yet can precede (:func:`_fetch_folders`); the others are read
  again by the next batch.
"""

from __future__ import annotations

import functools
import unicodedata
from collections import deque
from typing import Awaitable, Callable

from sqlalchemy import Integer, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from leader.store import Store
from leader.version_sql import COMMITTED, DELETED, FILE_VERSIONS, FOLDERS, unindexed
from shared.errors import BadRequest
from shared.protocol.rules import MAX_DELIMITER_BYTES, MAX_SCAN_LIMIT

_C = FILE_VERSIONS.c
_F = FOLDERS.c
_LATER = FILE_VERSIONS.alias("later")

# Longest prefix / after / start / readable prefix, UTF-8 bytes: a key is at most 1025 (a 1024-byte folder
# path and its "/"), so a longer bound is a mistake, refused before it reaches SQL.
MAX_BOUND_BYTES = 4096
# Rows a batch reads first when a delimiter may make the scan seek (a seek drops what the batch read past
# it); it doubles while the scan goes on without a seek, up to what the answer still needs.
FIRST_BATCH = 8

Item = tuple[str, dict]  # (key, answer entry)
Fetch = Callable[[AsyncConnection, str, bool, "str | None", int], Awaitable[tuple[list[Item], bool]]]


def successor(prefix: str) -> str | None:
    """The least string above every string that starts with ``prefix`` (None when there is none): its last
    character incremented, skipping the surrogates, which no UTF-8 text holds."""
    chars = list(prefix)
    while chars:
        code = ord(chars[-1])
        if code < 0x10FFFF:
            code += 1
            chars[-1] = chr(0xE000 if 0xD800 <= code <= 0xDFFF else code)
            return "".join(chars)
        chars.pop()
    return None


def key_ranges(prefix: str, readable: list[str] | None) -> list[tuple[str, str | None]]:
    """The keys that start with ``prefix`` and (unless ``readable`` is None) with one of ``readable``, as
    disjoint ``[lo, hi)`` ranges in order (``hi`` None: no upper bound)."""
    starts = [prefix] if readable is None else [
        r if r.startswith(prefix) else prefix for r in readable if r.startswith(prefix) or prefix.startswith(r)]
    kept: list[str] = []
    for s in sorted(set(starts)):
        if not (kept and s.startswith(kept[-1])):  # a range inside an earlier one adds nothing
            kept.append(s)
    return [(s, successor(s)) for s in kept]


# ---------------------------------------------------------------- the two kinds of keys


@functools.lru_cache(maxsize=4)
def _files_statement(inclusive: bool, bounded: bool):
    """Latest committed version of each path in ``[lo, hi)`` (``(lo, hi)``; no ``hi`` unless ``bounded``), in
    path order, at most ``k``: a range walk of ``ix_file_versions_path_state_version`` (``unindexed``
    keeps the planner off the ``state`` index, as in ``leader/namespace.py``)."""
    lo = bindparam("lo", type_=_C.path.type)
    q = (select(_C.path, _C.version, _C.size, _C.sha256, _C.etag, _C.content_type, _C.created_at, _C.committed_at)
         .where(unindexed(_C.state) == COMMITTED, _C.path >= lo if inclusive else _C.path > lo,
                _C.version == select(func.max(_LATER.c.version))
                .where(_LATER.c.path == _C.path, _LATER.c.state == COMMITTED).scalar_subquery()))
    if bounded:
        q = q.where(_C.path < bindparam("hi", type_=_C.path.type))
    return q.order_by(_C.path).limit(bindparam("k", type_=Integer))


async def _fetch_files(conn: AsyncConnection, lo: str, inclusive: bool, hi: str | None, k: int
                       ) -> tuple[list[Item], bool]:
    """The first ``k`` file keys from ``lo`` below ``hi``, and whether there are no more."""
    rows = (await conn.execute(_files_statement(inclusive, hi is not None), {"lo": lo, "hi": hi, "k": k})).all()
    items = [(r.path, {"key": r.path, "path": r.path, "size": r.size, "version": r.version,
                       "created_at": r.created_at, "committed_at": r.committed_at, "sha256": r.sha256,
                       "etag": r.etag, "content_type": r.content_type}) for r in rows]
    return items, len(rows) < k


@functools.lru_cache(maxsize=4)
def _history_paths_statement(inclusive: bool, bounded: bool):
    """The paths in ``[lo, hi)`` (``(lo, hi)``) with a committed or tombstoned version, in path order, at
    most ``k``: a range walk of ``ix_file_versions_path_state_version``."""
    lo = bindparam("lo", type_=_C.path.type)
    q = select(_C.path).where(unindexed(_C.state).in_((COMMITTED, DELETED)),
                              _C.path >= lo if inclusive else _C.path > lo)
    if bounded:
        q = q.where(_C.path < bindparam("hi", type_=_C.path.type))
    return q.distinct().order_by(_C.path).limit(bindparam("k", type_=Integer))


HISTORY_OF = (select(_C.path, _C.version, _C.state, _C.size, _C.sha256, _C.etag, _C.content_type, _C.created_at,
                     _C.committed_at, _C.deleted_at)
              .where(_C.path.in_(bindparam("paths", expanding=True)), _C.state.in_((COMMITTED, DELETED)))
              .order_by(_C.path, _C.version))


async def _fetch_histories(conn: AsyncConnection, lo: str, inclusive: bool, hi: str | None, k: int
                           ) -> tuple[list[Item], bool]:
    """The first ``k`` paths from ``lo`` below ``hi`` that have a committed or tombstoned version, each
    with all of them (``versions``, oldest first), and whether there are no more."""
    paths = list((await conn.execute(_history_paths_statement(inclusive, hi is not None),
                                     {"lo": lo, "hi": hi, "k": k})).scalars())
    items: dict[str, dict] = {p: {"key": p, "path": p, "versions": []} for p in paths}
    if paths:
        for r in (await conn.execute(HISTORY_OF, {"paths": paths})).all():
            items[r.path]["versions"].append({
                "version": r.version, "state": r.state, "size": r.size, "sha256": r.sha256, "etag": r.etag,
                "content_type": r.content_type, "created_at": r.created_at, "committed_at": r.committed_at,
                "deleted_at": r.deleted_at})
    return [(p, items[p]) for p in paths if items[p]["versions"]], len(paths) < k


@functools.lru_cache(maxsize=2)
def _folders_statement(bounded: bool):
    """Explicit folders with ``lo <= path (< hi)`` in path order, at most ``k``: a primary-key range."""
    q = select(_F.path, _F.created_at).where(_F.path >= bindparam("lo", type_=_F.path.type))
    if bounded:
        q = q.where(_F.path < bindparam("hi", type_=_F.path.type))
    return q.order_by(_F.path).limit(bindparam("k", type_=Integer))


FOLDERS_NAMED = select(_F.path, _F.created_at).where(_F.path.in_(bindparam("paths", expanding=True)))


def _key_in(key: str, lo: str, inclusive: bool, hi: str | None) -> bool:
    return (key >= lo if inclusive else key > lo) and (hi is None or key < hi)


def _near_prefixes(lo: str) -> list[str]:
    """The proper prefixes ``p`` of ``lo`` whose key ``p + "/"`` is at or after ``lo`` although ``p`` sorts
    before it: those followed in ``lo`` by a character below ``"/"``, or by ``"/"`` ending ``lo``."""
    return [lo[:i] for i in range(1, len(lo)) if lo[i] < "/" or lo[i:] == "/"]


async def _fetch_folders(conn: AsyncConnection, lo: str, inclusive: bool, hi: str | None, k: int
                         ) -> tuple[list[Item], bool]:
    """The next folder keys from ``lo`` below ``hi`` in key order (at least one unless there are no
    more), and whether there are no more.

    A key ``p + "/"`` is at or after ``lo`` when ``p >= lo``, or when ``p`` is one of :func:`_near_prefixes`
    of ``lo`` (read by name), and below ``hi`` only if ``p < hi``: the candidates are read in path order,
    ``k`` rows at a time. Of a full batch, whose last row is ``last``, only the keys below ``last + "/"``
    are answered: a folder ``y`` not read yet has ``y > last``, and then ``y + "/"`` sorts after every such
    key (after ``s + "/"`` where ``s`` and ``last`` differ before ``s`` ends, as ``y`` does not sort before
    ``last``; and where ``s`` is a prefix of ``last`` followed there by ``"/"`` or above, as ``y`` then
    extends ``s`` by that much or more, or differs from it earlier and higher). A batch that answers none
    is read again twice as large."""
    near = _near_prefixes(lo)
    named = sorted((await conn.execute(FOLDERS_NAMED, {"paths": near})).all()) if near else []
    while True:
        rows = (await conn.execute(_folders_statement(hi is not None), {"lo": lo, "hi": hi, "k": k})).all()
        read = [*named, *rows]  # in path order: the named ones sort before lo
        keys = sorted(((r.path + "/", r) for r in read if _key_in(r.path + "/", lo, inclusive, hi)),
                      key=lambda pair: pair[0])
        if len(rows) < k:
            return [_folder_item(key, r) for key, r in keys], True
        out = [_folder_item(key, r) for key, r in keys if key < rows[-1].path + "/"]
        if out:
            return out, False
        k *= 2


def _folder_item(key: str, row) -> Item:
    return key, {"key": key, "path": row.path, "folder": True, "created_at": row.created_at}


class _Keys:
    """One kind of keys in ``[lo, hi)``, in key order: read in batches by ``fetch``, consumed by ``pop``,
    skipped by ``seek``."""

    def __init__(self, conn: AsyncConnection, fetch: Fetch, lo: str, inclusive: bool, hi: str | None,
                 batch: int) -> None:
        self.conn, self.fetch, self.lo, self.inclusive, self.hi = conn, fetch, lo, inclusive, hi
        self.buffer: deque[Item] = deque()
        self.done = False
        self.first_batch = self.batch = batch

    async def head(self, want: int) -> Item | None:
        """The next key, reading a batch of at most ``want`` when none is buffered."""
        if not self.buffer and not self.done:
            items, self.done = await self.fetch(self.conn, self.lo, self.inclusive, self.hi, min(want, self.batch))
            self.buffer.extend(items)
            if items:
                self.lo, self.inclusive = items[-1][0], False
            self.batch *= 2
        return self.buffer[0] if self.buffer else None

    def pop(self) -> Item:
        return self.buffer.popleft()

    def seek(self, lo: str) -> None:
        """Skip every key below ``lo``."""
        dropped = False
        while self.buffer and self.buffer[0][0] < lo:
            self.buffer.popleft()
            dropped = True
        if not self.buffer:
            self.lo, self.inclusive = lo, True
        if dropped or not self.buffer:
            self.batch = self.first_batch


# ---------------------------------------------------------------- the scan


def checked_bound(name: str, value: str | None) -> str | None:
    """``value`` in NFC (as every path), refused when over :data:`MAX_BOUND_BYTES` or holding a control
    character (no key holds one; PostgreSQL cannot compare a NUL)."""
    if value is None:
        return None
    if len(value.encode("utf-8", "surrogatepass")) > MAX_BOUND_BYTES:
        raise BadRequest(f"{name} is longer than {MAX_BOUND_BYTES} bytes")
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or 0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise BadRequest(f"{name} contains a control character or a lone surrogate")
    return unicodedata.normalize("NFC", value)


async def scan(store: Store, prefix: str = "", after: str | None = None, start: str | None = None,
               limit: int = MAX_SCAN_LIMIT, delimiter: str | None = None,
               readable: list[str] | None = None, history: bool = False) -> dict:
    """The keys (see the module docstring) that start with ``prefix``, sort after ``after`` (exclusive)
    and at or after ``start`` (inclusive), and (unless ``readable`` is None) start with one of the
    ``readable`` prefixes, in key order, at most ``limit`` results (1..``MAX_SCAN_LIMIT``). Bounds are
    taken in NFC; an empty ``delimiter`` is none.

    Answer: ``{"items": [...], "truncated": bool, "next": str | None}``. ``items`` is one list in key
    order, each one result:

    * a file: ``{"key", "path", "size" (bytes), "version", "created_at", "committed_at" (UNIX seconds),
      "sha256", "etag", "content_type"}`` (``key`` is ``path``; ``etag``/``content_type`` None if unset);
    * with ``history``, a path instead: ``{"key", "path", "versions": [...]}``, every committed or
      tombstoned version of it, oldest first, each ``{"version", "state" ("committed" | "deleted"),
      "size", "sha256", "etag", "content_type", "created_at", "committed_at", "deleted_at"}``; a path
      whose versions are all in the trash is one too;
    * an explicit folder: ``{"key": path + "/", "path", "folder": True, "created_at"}``;
    * with ``delimiter``, a common prefix: ``{"key": common prefix, "prefix": True}``, answered once and
      counting as one result. A common prefix that does not sort after ``after`` (and at or after
      ``start``) is not answered, though its keys are skipped all the same: so ``after=next`` goes on
      past the prefix a page ended with, and an ``after`` inside a common prefix skips the rest of it.

    ``truncated``: more results follow. ``next``: the last item's key (pass it as the next ``after``),
    None when there are no items. Raises :class:`BadRequest` (400) for a ``limit`` out of range, a
    ``delimiter`` over ``MAX_DELIMITER_BYTES`` bytes, or a bound with a control character or over
    ``MAX_BOUND_BYTES`` bytes."""
    if not 1 <= limit <= MAX_SCAN_LIMIT:
        raise BadRequest(f"limit must be from 1 to {MAX_SCAN_LIMIT}, got {limit}")
    delimiter = checked_bound("delimiter", delimiter) or None
    if delimiter is not None and len(delimiter.encode("utf-8")) > MAX_DELIMITER_BYTES:
        raise BadRequest(f"delimiter is longer than {MAX_DELIMITER_BYTES} bytes")
    prefix = checked_bound("prefix", prefix) or ""
    after, start = checked_bound("after", after), checked_bound("start", start)
    if readable is not None:
        readable = [checked_bound("readable", r) for r in readable]

    def answered(key: str) -> bool:
        return (after is None or key > after) and (start is None or key >= start)

    # The scan's floor, moved up by every seek: keys below it are never answered.
    floor, inclusive = ("", True) if after is None and start is None else (
        (start, True) if after is None or (start is not None and start > after) else (after, False))
    items: list[Item] = []
    async with store.read_conn() as conn:
        for lo, hi in key_ranges(prefix, readable):
            if len(items) > limit:
                break
            first, first_inclusive = (floor, inclusive) if floor > lo or (floor == lo and not inclusive) else (lo, True)
            if hi is not None and first >= hi:
                continue
            batch = FIRST_BATCH if delimiter else limit + 1
            fetches = (_fetch_histories if history else _fetch_files, _fetch_folders)
            kinds = [_Keys(conn, fetch, first, first_inclusive, hi, batch) for fetch in fetches]
            while len(items) <= limit:
                want = limit + 1 - len(items)
                heads = [(head[0], i) for i, kind in enumerate(kinds) if (head := await kind.head(want)) is not None]
                if not heads:
                    break
                key, entry = kinds[min(heads)[1]].pop()
                cut = key.find(delimiter, len(prefix)) if delimiter else -1
                if cut < 0:
                    items.append((key, entry))
                    continue
                common = key[:cut + len(delimiter)]
                if answered(common):
                    items.append((common, {"key": common, "prefix": True}))
                beyond = successor(common)
                if beyond is None:
                    return _answer(items, limit)
                floor, inclusive = beyond, True
                if hi is not None and beyond >= hi:
                    break  # the rest of this range is inside the common prefix
                for kind in kinds:
                    kind.seek(beyond)
    return _answer(items, limit)


def _answer(items: list[Item], limit: int) -> dict:
    shown = [entry for _, entry in items[:limit]]
    return {"items": shown, "truncated": len(items) > limit, "next": shown[-1]["key"] if shown else None}
