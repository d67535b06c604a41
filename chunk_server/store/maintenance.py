"""Maintenance of the chunk store's committed chunks, outside the two-phase commit: repair and
anti-entropy pushes (``replicate``), the rowid walk of anti-entropy and scrub (``iter_committed``),
scrub's ``quarantine``, GC (``gc_candidates``, ``gc_delete``), handoff (``delete_if_replicated``) and
giving freed pages back to the file system (``vacuum``). docs/failure-handling.md describes each job.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import time
from dataclasses import dataclass
from typing import Sequence

from .connections import Connections
from .schema import (
    COMMITTED, DELETE_DATA, DELETE_STATE, INSERT_DATA, INSERT_STATE, PENDING, STATE_OF, add_counters,
    next_chunk_id, select_rows,
)

_UNPINNED = "s.id NOT IN (SELECT chunk_id FROM txn_chunks)"


@dataclass(frozen=True)
class Removed:
    """Outcome of a delete (GC, handoff, quarantine): ``digests`` removed, ``bytes`` of chunk data."""

    digests: list[bytes]
    bytes: int

    @property
    def count(self) -> int:
        return len(self.digests)


class Maintenance(Connections):
    """Repair, GC, handoff, quarantine and scrub's walk. Each write method is one write transaction; an
    ``sqlite3.Error`` rolls it back and is raised."""

    async def replicate(self, chunks: Sequence[tuple[bytes, bytes | memoryview]]) -> int:
        """Store ``(digest, data)`` pairs committed at once (anti-entropy push, repair). The caller has
        verified every digest. A pending copy becomes committed; a committed one is only touched.
        Returns how many chunks became newly committed here."""
        now = time.time()

        def tx(conn: sqlite3.Connection) -> int:
            known = {d: (cid, st) for d, cid, st in select_rows(conn, STATE_OF, [d for d, _ in chunks])}
            next_id = next_chunk_id(conn)
            data_rows, state_rows, promote, new_bytes = [], [], [], 0
            for digest, data in chunks:
                hit = known.get(digest)
                if hit is None:
                    data_rows.append((next_id, digest, data))
                    state_rows.append((next_id, COMMITTED, len(data), now, now))
                    known[digest] = (next_id, COMMITTED)
                    next_id += 1
                    new_bytes += len(data)
                elif hit[1] == PENDING:
                    promote.append((now, hit[0]))
                    known[digest] = (hit[0], COMMITTED)
                    new_bytes += len(data)
                else:
                    continue
            conn.executemany(INSERT_DATA, data_rows)
            conn.executemany(INSERT_STATE, state_rows)
            conn.executemany("UPDATE chunk_state SET state = 2, touched_at = ? WHERE id = ?", promote)
            add_counters(conn, len(data_rows) + len(promote), new_bytes)
            return len(data_rows) + len(promote)

        return await self._write(tx)

    async def iter_committed(self, after_rowid: int, limit: int,
                             with_data: bool = False) -> list[tuple[int, bytes, bytes | None]]:
        """Up to ``limit`` committed chunks with ``rowid > after_rowid`` in rowid order, as
        ``(rowid, digest, data or None)``: the walk of anti-entropy and scrub."""
        col = "c.data" if with_data else "NULL"
        return await self._read(lambda conn: conn.execute(
            f"SELECT s.id, c.digest, {col} FROM chunk_state s JOIN chunks c ON c.id = s.id "
            "WHERE s.id > ? AND s.state = 2 ORDER BY s.id LIMIT ?", (after_rowid, limit)).fetchall())

    async def quarantine(self, digests: Sequence[bytes], verify: bool = True) -> Removed:
        """Move committed chunks to the ``quarantine`` table (kept for forensics, never served). With
        ``verify`` only the rows whose data does not hash to their digest move, checked inside the write
        transaction (GFS §5.2; Garage ``block/manager.rs``)."""
        now = time.time()

        def tx(conn: sqlite3.Connection) -> Removed:
            rows = select_rows(conn, "SELECT c.id, c.digest, c.data, s.size FROM chunks c JOIN chunk_state s "
                                     "ON s.id = c.id WHERE s.state = 2 AND c.digest IN ({})", digests)
            bad = [r for r in rows if not verify or hashlib.sha256(r[2]).digest() != r[1]]
            conn.executemany("INSERT INTO quarantine(digest, data, size, quarantined_at) VALUES (?, ?, ?, ?)",
                             [(d, data, size, now) for _, d, data, size in bad])
            return _delete_committed(conn, [(cid, d, size) for cid, d, _, size in bad])

        return await self._write(tx)

    async def quarantined(self) -> list[bytes]:
        """Digests in the quarantine table, oldest first."""
        return await self._read(lambda conn: [r[0] for r in conn.execute(
            "SELECT digest FROM quarantine ORDER BY id")])

    async def gc_candidates(self, older_than: float, limit: int, after_rowid: int = 0) -> list[tuple[int, bytes]]:
        """Up to ``limit`` committed, unpinned chunks with ``touched_at < older_than`` (UNIX seconds) and
        ``rowid > after_rowid``, as ``(rowid, digest)`` in rowid order (failure-handling.md GC step 1)."""
        return await self._read(lambda conn: conn.execute(
            "SELECT s.id, c.digest FROM chunk_state s JOIN chunks c ON c.id = s.id WHERE s.id > ? "
            f"AND s.state = 2 AND s.touched_at < ? AND {_UNPINNED} ORDER BY s.id LIMIT ?",
            (after_rowid, older_than, limit)).fetchall())

    async def gc_delete(self, digests: Sequence[bytes], t0: float) -> Removed:
        """GC step 3, one write transaction: delete those of ``digests`` that are committed, still have
        no pin and were not touched since ``t0`` (UNIX seconds); then give the freed pages back to the
        file system."""

        def tx(conn: sqlite3.Connection) -> Removed:
            rows = select_rows(conn, "SELECT c.id, c.digest, s.size FROM chunks c JOIN chunk_state s "
                                     f"ON s.id = c.id WHERE s.state = 2 AND s.touched_at < {float(t0)!r} "
                                     f"AND {_UNPINNED} AND c.digest IN ({{}})", digests)
            return _delete_committed(conn, rows)

        removed = await self._write(tx)
        if removed.count:
            await self.vacuum()
        return removed

    async def delete_if_replicated(self, digests: Sequence[bytes]) -> Removed:
        """Handoff: delete committed, unpinned copies the caller has confirmed on every preference-list
        server (failure-handling.md, anti-entropy step 3); then give the freed pages back."""

        def tx(conn: sqlite3.Connection) -> Removed:
            rows = select_rows(conn, "SELECT c.id, c.digest, s.size FROM chunks c JOIN chunk_state s "
                                     f"ON s.id = c.id WHERE s.state = 2 AND {_UNPINNED} AND c.digest IN ({{}})",
                               digests)
            return _delete_committed(conn, rows)

        removed = await self._write(tx)
        if removed.count:
            await self.vacuum()
        return removed

    async def vacuum(self) -> None:
        """``PRAGMA incremental_vacuum``: truncate the free pages off the end of the file (the WAL carries
        the change; the file shrinks at the next checkpoint)."""

        def run() -> None:
            # executescript steps the pragma to completion; execute() would free a single page.
            self._writer.executescript("PRAGMA incremental_vacuum")

        await asyncio.get_running_loop().run_in_executor(self._writer_pool, run)


def _delete_committed(conn: sqlite3.Connection, rows: Sequence[tuple[int, bytes, int]]) -> Removed:
    """Delete committed chunks given as ``(id, digest, size)`` and keep the counters exact."""
    ids = [(cid,) for cid, _, _ in rows]
    conn.executemany(DELETE_DATA, ids)
    conn.executemany(DELETE_STATE, ids)
    # Pins on these rows (only quarantine removes pinned chunks) stay: the txn's counts do not change,
    # and its commit or abort drops them.
    size = sum(r[2] for r in rows)
    add_counters(conn, -len(rows), -size)
    return Removed([d for _, d, _ in rows], size)
