"""The chunk store's index: the SQLite schema, its constants, and the row-level SQL that several concerns
(two-phase commit, maintenance, reads, compaction) share.

Chunk bytes live in segment files (``segments.py``); ``DATA_DIR/chunk_index.db`` (WAL mode) says where each
record is and in which state. It is small: one row per chunk plus an 8-byte key index::

    chunks(id INTEGER PRIMARY KEY, key, tail, state, segment, offset, size, touched_at)
        key: the digest's first 8 bytes as a signed big-endian integer (indexed); tail: its other 24
        bytes. state: 1 pending | 2 committed. segment, offset: where the record starts. size: data
        bytes. touched_at: last prepare / commit in milliseconds, rounded up (GC's race guard; 0 for a
        copy that anti-entropy or repair stored, maintenance.py).
    segments(id, live_bytes, total_bytes, sealed) -- per segment file: record bytes still referenced,
        bytes written (the committed end of the file), and whether it is full (compaction's input)
    txn_chunks(txn_id, chunk_id, created_at, pin)  -- open txns: pin 0 = pending data, 1 = dedup hit
    counters(committed_chunks, committed_bytes)     -- one row, kept exact inside each write transaction
    meta(key, value)                                -- anti-entropy / scrub cursors and job counters
    quarantine(id, digest, data, size, quarantined_at) -- corrupt chunks, kept for forensics, never served

Why a key column and not ``digest BLOB UNIQUE``: SQLite's unique index repeats the 32-byte digest in a
B-tree filled in random order (~70 % full), ~60 bytes per chunk, 6 % of a 1 KiB chunk on its own. An
index of 8-byte integers costs ~26; digests sharing a key (1 in 2^64 pairs) are told apart by ``tail``
(:func:`lookup`). Uniqueness is kept by the single writer: every insert follows a lookup in the same
transaction. docs/chunk-store.md has the bytes on disk per byte stored.
"""

from __future__ import annotations

import math
import sqlite3
import time
from typing import Iterable, NamedTuple, Sequence

from .segments import SegmentLog, record_size

PAGE_SIZE = 8192  # bytes; measured in docs/chunk-store.md: 1.09 bytes on disk per byte for 1 KiB chunks
# Bound parameters per ``IN (...)`` query; SQLite allows 32766, smaller batches keep one statement cached.
IN_BATCH = 2048

PENDING, COMMITTED = 1, 2  # chunks.state; also the ChunkPresence byte of a chunk in that state

SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks(
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: txn_chunks and cursors name chunks by id
    key INTEGER NOT NULL,       -- digest[:8], signed big-endian
    tail BLOB NOT NULL,         -- digest[8:]
    state INTEGER NOT NULL,     -- 1 pending, 2 committed
    segment INTEGER NOT NULL,
    offset INTEGER NOT NULL,    -- of the record header in the segment
    size INTEGER NOT NULL,      -- bytes of data
    touched_at INTEGER NOT NULL -- ms since the epoch, rounded up: last prepare / commit (0: a replicated copy)
);
CREATE INDEX IF NOT EXISTS chunks_by_key ON chunks(key);
CREATE TABLE IF NOT EXISTS segments(
    id INTEGER PRIMARY KEY,
    live_bytes INTEGER NOT NULL,   -- record bytes (header + data) that rows of chunks point to
    total_bytes INTEGER NOT NULL,  -- the committed end of the file
    sealed INTEGER NOT NULL        -- 1: full, never appended to again
);
CREATE TABLE IF NOT EXISTS txn_chunks(
    txn_id TEXT NOT NULL,
    chunk_id INTEGER NOT NULL,  -- = chunks.id
    created_at REAL NOT NULL,
    pin INTEGER NOT NULL DEFAULT 0,  -- 1: a dedup hit on a committed chunk, held until commit / abort
    PRIMARY KEY(txn_id, chunk_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters(
    id INTEGER PRIMARY KEY CHECK (id = 1),
    committed_chunks INTEGER NOT NULL,
    committed_bytes INTEGER NOT NULL
);
INSERT OR IGNORE INTO counters(id, committed_chunks, committed_bytes) VALUES (1, 0, 0);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS quarantine(
    id INTEGER PRIMARY KEY,
    digest BLOB NOT NULL,
    data BLOB NOT NULL,
    size INTEGER NOT NULL,
    quarantined_at REAL NOT NULL
);
"""

ROW = "id, key, tail, state, segment, offset, size"  # the columns of a :class:`Row`, in order
INSERT_ROW = ("INSERT INTO chunks(id, key, tail, state, segment, offset, size, touched_at) "
              "VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
DELETE_ROW = "DELETE FROM chunks WHERE id = ?"


class Row(NamedTuple):
    """One chunk's index row: where its record is and in which state."""

    id: int
    key: int
    tail: bytes
    state: int
    segment: int
    offset: int
    size: int

    @property
    def digest(self) -> bytes:
        return self.key.to_bytes(8, "big", signed=True) + self.tail


def key_of(digest: bytes) -> int:
    """The indexed part of a digest: its first 8 bytes as a signed big-endian integer."""
    return int.from_bytes(digest[:8], "big", signed=True)


def now_ms() -> int:
    """The current time in whole milliseconds, rounded up (a touch is never dated before it happened)."""
    return math.ceil(time.time() * 1000)


def lookup(conn: sqlite3.Connection, digests: Sequence[bytes], where: str = "") -> dict[bytes, Row]:
    """``{digest: Row}`` of the stored chunks among ``digests`` (in batches of ``IN_BATCH``), optionally
    narrowed by an extra SQL condition ``where`` on the columns of ``chunks``."""
    found: dict[bytes, Row] = {}
    keys = list(dict.fromkeys(key_of(d) for d in digests))
    extra = f" AND ({where})" if where else ""
    wanted = set(digests)
    for start in range(0, len(keys), IN_BATCH):
        batch = keys[start : start + IN_BATCH]
        sql = f"SELECT {ROW} FROM chunks WHERE key IN ({','.join('?' * len(batch))}){extra}"
        for raw in conn.execute(sql, batch):
            row = Row(*raw)
            digest = row.digest
            if digest in wanted:
                found[digest] = row
    return found


def next_chunk_id(conn: sqlite3.Connection) -> int:
    """The next chunk rowid: assigned here (there is one writer) so that rows are inserted in bulk with
    ``executemany``. New chunks sort after every existing one, so cursor walks see them."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'chunks'").fetchone()
    return (row[0] if row else 0) + 1


def add_counters(conn: sqlite3.Connection, chunks: int, size: int) -> None:
    """Add ``chunks`` and ``size`` (bytes; negative to subtract) to the committed counters, inside the
    caller's write transaction."""
    if chunks:
        conn.execute("UPDATE counters SET committed_chunks = committed_chunks + ?, "
                     "committed_bytes = committed_bytes + ? WHERE id = 1", (chunks, size))


def add_live_bytes(conn: sqlite3.Connection, per_segment: dict[int, int]) -> None:
    """Add record bytes (negative to subtract) to the segments' ``live_bytes``, inside the caller's write
    transaction."""
    conn.executemany("UPDATE segments SET live_bytes = live_bytes + ? WHERE id = ?",
                     [(n, seg) for seg, n in per_segment.items() if n])


def delete_rows(conn: sqlite3.Connection, rows: Iterable[Row]) -> None:
    """Delete chunk rows and take their records off their segments' live bytes; the records become
    dead bytes that compaction reclaims."""
    rows = list(rows)
    conn.executemany(DELETE_ROW, [(r.id,) for r in rows])
    freed: dict[int, int] = {}
    for r in rows:
        freed[r.segment] = freed.get(r.segment, 0) - record_size(r.size)
    add_live_bytes(conn, freed)


def append_records(conn: sqlite3.Connection, segments: SegmentLog, datas: Sequence[bytes | memoryview]
                   ) -> tuple[int, list[int]]:
    """Append ``datas`` as one contiguous batch of records to the active segment (sealing it first and
    starting the next when it is full) and count them in its ``segments`` row, inside the caller's write
    transaction; ``(segment, record offsets)``. The caller inserts the rows that point to them in the same
    transaction. Raises ``OSError`` (the transaction then rolls back and the log is reopened at the
    committed end: connections.py)."""
    if segments.needs_new_segment():
        conn.execute("UPDATE segments SET sealed = 1 WHERE id = ?", (segments.active,))
        conn.execute("INSERT INTO segments(id, live_bytes, total_bytes, sealed) VALUES (?, 0, 0, 0)",
                     (segments.active + 1,))
        segments.create(segments.active + 1)
    offsets = segments.append(datas)
    live = sum(record_size(len(d)) for d in datas)
    conn.execute("UPDATE segments SET total_bytes = ?, live_bytes = live_bytes + ? WHERE id = ?",
                 (segments.end, live, segments.active))
    return segments.active, offsets
