"""The chunk store's bookkeeping: the ``meta`` table (anti-entropy / scrub cursors and job counters),
the ``/stats`` numbers, and the size of the database on disk.
"""

from __future__ import annotations

import sqlite3
from typing import Iterable

from .connections import Connections


class Meta(Connections):
    """get_meta / set_meta / stats / disk_bytes."""

    async def get_meta(self, keys: Iterable[str] | None = None) -> dict[str, object]:
        """``{key: value}`` of the ``meta`` table (all keys, or those asked for that exist)."""

        def query(conn: sqlite3.Connection) -> dict[str, object]:
            rows = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            return rows if keys is None else {k: rows[k] for k in keys if k in rows}

        return await self._read(query)

    async def set_meta(self, values: dict[str, object] | None = None, add: dict[str, int | float] | None = None) -> None:
        """Set ``values`` and add ``add`` to numeric keys (missing keys count from 0), in one txn. Raises
        ``sqlite3.Error`` (nothing written) if the write fails."""

        def tx(conn: sqlite3.Connection) -> None:
            conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                             "value = excluded.value", (values or {}).items())
            conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                             "value = value + excluded.value", (add or {}).items())

        await self._write(tx)

    async def stats(self) -> dict[str, int]:
        """``chunks`` / ``bytes`` committed, ``pending_chunks``, ``pending_txns``, ``pinned_chunks``,
        ``quarantined``, ``segments`` (files), ``dead_bytes`` (record bytes in segments no row points to
        any more: what compaction can reclaim) and ``disk_bytes`` (index, its WAL and the segments), from
        one read snapshot."""

        def query(conn: sqlite3.Connection) -> dict[str, int]:
            conn.execute("BEGIN")  # one snapshot for every query
            try:
                chunks, size = conn.execute(
                    "SELECT committed_chunks, committed_bytes FROM counters WHERE id = 1").fetchone()
                pending_txns = conn.execute("SELECT count(DISTINCT txn_id) FROM txn_chunks").fetchone()[0]
                pending_chunks, pinned = conn.execute(
                    "SELECT count(DISTINCT CASE WHEN s.state = 1 THEN t.chunk_id END), "
                    "count(DISTINCT CASE WHEN s.state = 2 THEN t.chunk_id END) FROM txn_chunks t "
                    "JOIN chunks s ON s.id = t.chunk_id").fetchone()
                quarantined = conn.execute("SELECT count(*) FROM quarantine").fetchone()[0]
                segments, live, total = conn.execute(
                    "SELECT count(*), total(live_bytes), total(total_bytes) FROM segments").fetchone()
            finally:
                conn.execute("COMMIT")
            return {"chunks": chunks, "bytes": size, "pending_chunks": pending_chunks,
                    "pending_txns": pending_txns, "pinned_chunks": pinned, "quarantined": quarantined,
                    "segments": segments, "dead_bytes": int(total - live), "disk_bytes": self.disk_bytes()}

        return await self._read(query)

    def disk_bytes(self) -> int:
        """Bytes of the index, its ``-wal`` file and every segment file (a missing file counts 0)."""
        total = self.log.disk_bytes()
        for suffix in ("", "-wal"):
            try:
                total += (self.path.parent / (self.path.name + suffix)).stat().st_size
            except FileNotFoundError:
                pass
        return total
