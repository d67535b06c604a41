"""The one-time migration of a chunk store of the one-database layout (``DATA_DIR/chunks.db``, chunk bytes
in SQLite rows, before docs/chunk-store.md) into segments and the new index, run when the store opens.

Every row keeps its id, state, size and touch time, so open txns, pins and the anti-entropy / scrub
cursors carry over; ``txn_chunks``, ``meta`` and ``quarantine`` are copied as they are. Chunks are copied
in id order, ``BATCH_ROWS`` per transaction. The old database is deleted only once everything is in the
new index and the segments are on disk; a crash before that leaves it in place, and the next open wipes
the half-built index and starts again. The store needs free space for a second copy while it runs.
"""

from __future__ import annotations

import logging
import math
import sqlite3
from pathlib import Path

from . import recovery
from .schema import INSERT_ROW, add_counters, append_records, key_of
from .segments import SegmentLog, _fsync_dir

log = logging.getLogger("ringfs.chunk_server.store")

OLD_FILE = "chunks.db"
BATCH_ROWS = 4096
_TABLES = ("chunks", "segments", "txn_chunks", "meta", "quarantine")


def old_store(data_dir: Path) -> Path | None:
    """The old layout's database under ``data_dir``, if there is one."""
    path = Path(data_dir) / OLD_FILE
    return path if path.exists() else None


def migrate(data_dir: Path, conn: sqlite3.Connection, segments: SegmentLog, fresh: bool) -> None:
    """Move ``data_dir/chunks.db`` into ``conn``'s index and ``segments``; ``fresh``: the index was just
    created (otherwise it is the remains of a migration that stopped, and is emptied first). Raises
    ``RuntimeError`` for the pre-issue-4 layout, ``sqlite3.Error`` / ``OSError`` on I/O errors (the old
    database is then untouched)."""
    path = Path(data_dir) / OLD_FILE
    old = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        columns = {row[1] for row in old.execute("PRAGMA table_info(chunks)")}
        if "state" in columns:
            raise RuntimeError(f"{path} has the pre-issue-4 layout (state inside chunks); move it away "
                               "before starting this version (anti-entropy then refills this server)")
        log.warning("migrating %s into segments (a one-time copy; the old file is deleted at the end)", path)
        if not fresh:
            _empty(conn, segments)
        conn.execute("INSERT INTO segments(id, live_bytes, total_bytes, sealed) VALUES (1, 0, 0, 0)")
        segments.create(1)
        after, copied = 0, 0
        while True:
            rows = old.execute(
                "SELECT c.id, c.digest, c.data, s.state, s.size, s.touched_at FROM chunks c "
                "JOIN chunk_state s ON s.id = c.id WHERE c.id > ? ORDER BY c.id LIMIT ?",
                (after, BATCH_ROWS)).fetchall()
            if not rows:
                break
            conn.execute("BEGIN IMMEDIATE")
            segment, offsets = append_records(conn, segments, [r[2] for r in rows])
            conn.executemany(INSERT_ROW, [
                (cid, key_of(digest), digest[8:], state, segment, offset, size, math.ceil(touched * 1000))
                for (cid, digest, _, state, size, touched), offset in zip(rows, offsets)])
            conn.execute("COMMIT")
            after, copied = rows[-1][0], copied + len(rows)
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO txn_chunks(txn_id, chunk_id, created_at, pin) VALUES (?, ?, ?, ?)",
                         old.execute("SELECT txn_id, chunk_id, created_at, pin FROM txn_chunks"))
        conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", old.execute("SELECT key, value FROM meta"))
        conn.executemany("INSERT INTO quarantine(id, digest, data, size, quarantined_at) VALUES (?, ?, ?, ?, ?)",
                         old.execute("SELECT id, digest, data, size, quarantined_at FROM quarantine"))
        chunks, size = conn.execute("SELECT count(*), total(size) FROM chunks WHERE state = 2").fetchone()
        add_counters(conn, chunks, int(size))
        seq = old.execute("SELECT seq FROM sqlite_sequence WHERE name = 'chunks'").fetchone()
        if seq is not None:
            conn.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'chunks'", (seq[0],))
            conn.execute("INSERT INTO sqlite_sequence(name, seq) SELECT 'chunks', ? WHERE NOT EXISTS "
                         "(SELECT 1 FROM sqlite_sequence WHERE name = 'chunks')", (seq[0],))
        conn.execute("COMMIT")
        recovery.sync_segments(segments)
        conn.execute("PRAGMA wal_checkpoint(FULL)")
    finally:
        old.close()
    for suffix in ("", "-wal", "-shm"):
        (Path(data_dir) / (OLD_FILE + suffix)).unlink(missing_ok=True)
    _fsync_dir(Path(data_dir))
    recovery.mark_clean(segments)
    log.warning("migrated %d chunks from %s into segments", copied, path)


def _empty(conn: sqlite3.Connection, segments: SegmentLog) -> None:
    """Throw away a half-built index and its segments (the old database is still the truth)."""
    conn.execute("BEGIN IMMEDIATE")
    for table in _TABLES:
        conn.execute(f"DELETE FROM {table}")
    conn.execute("UPDATE counters SET committed_chunks = 0, committed_bytes = 0")
    conn.execute("DELETE FROM sqlite_sequence WHERE name = 'chunks'")
    conn.execute("COMMIT")
    for sid in segments.on_disk():
        segments.remove(sid)
