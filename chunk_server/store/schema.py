"""The chunk store's on-disk layout: the SQLite schema, its constants, and the row-level SQL that several
concerns (two-phase commit, maintenance, reads) share.

Layout (``DATA_DIR/chunks.db``, WAL mode, ``auto_vacuum=INCREMENTAL``): chunks of 1 KiB must not each
become a file (an inode and a 4 KiB block per KiB, a directory entry, a rename), so every chunk is a row::

    chunks(id INTEGER PRIMARY KEY, digest BLOB UNIQUE, data)     -- written once, never updated
    chunk_state(id INTEGER PRIMARY KEY, state 1 pending | 2 committed, size, created_at, touched_at)
    txn_chunks(txn_id, digest, created_at, pin)  -- open txns: pin 0 = pending data, 1 = dedup hit
    counters(committed_chunks, committed_bytes)  -- one row, kept exact inside each write transaction
    meta(key, value)                             -- anti-entropy / scrub cursors and job counters
    quarantine(id, digest, data, size, quarantined_at)  -- corrupt rows, kept for forensics, never served

Why two tables per chunk: a commit flips ``state`` and sets ``touched_at``. With those columns inside the
1 KiB data row, a commit rewrote every data page of the txn into the WAL (and the checkpoint then wrote
it to the database again); in the ~30-byte ``chunk_state`` rows a commit of 1024 chunks dirties a few
pages. Measured with ``python -m benchmarks.chunk_store --rounds 3`` (100 txns of 1024 random 1 KiB
chunks, prepare then commit each, best of 3; old layout via ``--store`` on ``git show HEAD:...``; SQLite
3.40.1; a shared, loaded machine, so the absolute rates vary ~2x between runs, the ratios do not)::

    one table with state            prepare 13-36 ms  commit  7-22 ms   1.112 bytes on disk per byte
    data + chunk_state (kept)       prepare 18-31 ms  commit 2.6-8 ms   1.145 bytes on disk per byte

Commit is 2.5-3x cheaper; prepare pays one small extra insert per chunk; together prepare+commit is equal
to ~30 % faster. The 3 % more bytes are the chunk_state rows and auto-vacuum's pointer-map pages.

Page size, measured as bytes on disk (db + wal after a checkpoint) per byte of chunk data stored, for
50 000 random 1 KiB chunks inserted 1 000 per transaction with ``executemany`` into a fresh WAL database,
then ``PRAGMA wal_checkpoint(TRUNCATE)`` and the sizes of the files summed (SQLite 3.40.1)::

    rowid table + UNIQUE(digest)   4096: 1.380   8192: 1.189   16384: 1.111  <- kept
    WITHOUT ROWID, digest PK       4096: 4.580   8192: 1.358   16384: 1.230

A 16 KiB page holds ~15 rows of 1 KiB and wastes less to the page tail; WITHOUT ROWID tables spill
1 KiB rows to overflow pages at small page sizes and were also 4x slower to insert. The remaining 11 %
is the digest index (~4 %), the row headers and page fill.
"""

from __future__ import annotations

import sqlite3
from typing import Sequence

PAGE_SIZE = 16384  # bytes; measured above: 1.11 bytes on disk per byte stored for 1 KiB chunks
# Bound parameters per ``IN (...)`` query; SQLite allows 32766, smaller batches keep one statement cached.
IN_BATCH = 2048

PENDING, COMMITTED = 1, 2  # chunk_state.state; also the ChunkPresence byte of a chunk in that state

SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks(
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: txn_chunks and cursors name chunks by id
    digest BLOB NOT NULL UNIQUE,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS chunk_state(
    id INTEGER PRIMARY KEY,  -- = chunks.id
    state INTEGER NOT NULL,  -- 1 pending, 2 committed
    size INTEGER NOT NULL,
    created_at REAL NOT NULL,
    touched_at REAL NOT NULL  -- last prepare / commit / replicate: GC's race guard
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

# ``(digest, id, state)`` of the stored chunks among the digests (one ``{}`` for the placeholders).
STATE_OF = "SELECT c.digest, c.id, s.state FROM chunks c JOIN chunk_state s ON s.id = c.id WHERE c.digest IN ({})"
# A digest already stored (pending or committed) is not written again; rowcount = rows really inserted.
INSERT_DATA = "INSERT INTO chunks(id, digest, data) VALUES (?, ?, ?) ON CONFLICT(digest) DO NOTHING"
INSERT_STATE = "INSERT INTO chunk_state(id, state, size, created_at, touched_at) VALUES (?, ?, ?, ?, ?)"
# Both rows of a chunk, by id (abort of pending chunks; GC, handoff and quarantine of committed ones).
DELETE_DATA = "DELETE FROM chunks WHERE id = ?"
DELETE_STATE = "DELETE FROM chunk_state WHERE id = ?"


def next_chunk_id(conn: sqlite3.Connection) -> int:
    """The next chunk rowid: assigned here (there is one writer) so that both rows of a chunk are inserted
    in bulk with ``executemany``. New chunks sort after every existing one, so cursor walks see them."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'chunks'").fetchone()
    return (row[0] if row else 0) + 1


def add_counters(conn: sqlite3.Connection, chunks: int, size: int) -> None:
    """Add ``chunks`` and ``size`` (bytes; negative to subtract) to the committed counters, inside the
    caller's write transaction."""
    if chunks:
        conn.execute("UPDATE counters SET committed_chunks = committed_chunks + ?, "
                     "committed_bytes = committed_bytes + ? WHERE id = 1", (chunks, size))


def select_rows(conn: sqlite3.Connection, sql: str, digests: Sequence[bytes]) -> list[tuple]:
    """Run ``sql`` (with one ``{}`` for the placeholders) over ``digests`` in batches of ``IN_BATCH``;
    every row found."""
    found: list[tuple] = []
    for start in range(0, len(digests), IN_BATCH):
        batch = digests[start : start + IN_BATCH]
        found.extend(conn.execute(sql.format(",".join("?" * len(batch))), batch).fetchall())
    return found
