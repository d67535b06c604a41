"""Two-phase commit of the chunk store: prepare (phase 1), commit (phase 3), abort, and the sweep of txns
never finalized.

Reference design: "User transmits data to the chunk servers in 'pending' mode" (phase 1, ``prepare``) and
"Finalize writes on chunk servers" (phase 3, ``commit``); what is never finalized is aborted or swept
after ``PENDING_TTL``. GFS §4.4 garbage-collects lazily the same way; docs/failure-handling.md adds
touch times and pins for GC, quarantine for scrub, and the cursors of anti-entropy.

A digest pending under two txns is stored once and referenced twice; a committed chunk is never written
again by a prepare (dedup): the txn *pins* it with a ``txn_chunks`` row with ``pin = 1`` and no data, so
GC cannot delete it before the txn commits or aborts. Abort deletes only pending chunks no other open
txn references.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Iterable, Sequence

from .connections import SMALL_WRITE_BYTES, SMALL_WRITE_CHUNKS, SMALL_WRITE_TXNS, Connections
from .schema import (
    COMMITTED, INSERT_ROW, PENDING, ROW, Row, add_counters, append_records, delete_rows, key_of, lookup,
    next_chunk_id, now_ms,
)
from .segments import SegmentLog

_TOUCH = "UPDATE chunks SET touched_at = ? WHERE id = ?"
_INSERT_TXN_CHUNK = "INSERT INTO txn_chunks(txn_id, chunk_id, created_at, pin) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING"
_OF_TXN = "SELECT chunk_id FROM txn_chunks WHERE txn_id = ?1"
_TXN_PENDING = f"SELECT count(*), total(size) FROM chunks WHERE state = 1 AND id IN ({_OF_TXN})"
# One statement: pending chunks become committed, and every chunk the txn referenced (pins too) is touched.
# The bytes stay where prepare appended them: a commit writes index rows only.
_COMMIT_TXN = f"UPDATE chunks SET state = 2, touched_at = ?2 WHERE id IN ({_OF_TXN})"
_TOUCH_TXN = f"UPDATE chunks SET touched_at = ?2 WHERE state = 2 AND id IN ({_OF_TXN})"
_TXN_PENDING_COUNT = "SELECT count(*) FROM txn_chunks WHERE txn_id = ?1 AND pin = 0"
_DROP_TXN = "DELETE FROM txn_chunks WHERE txn_id = ?1"
# Pending chunks of this txn that no other open txn references (txn_chunks only holds open txns: small).
_ABORTABLE = (
    f"SELECT {ROW} FROM chunks WHERE state = 1 AND id IN "
    "(SELECT chunk_id FROM txn_chunks WHERE txn_id = ?1 EXCEPT SELECT chunk_id FROM txn_chunks WHERE txn_id <> ?1)"
)


@dataclass(frozen=True)
class PrepareResult:
    """Phase 1 outcome: ``stored`` distinct chunks newly pending for the txn (what its commit will
    count), ``already_committed`` distinct chunks deduplicated against committed copies (and pinned)."""

    stored: int
    already_committed: int


class TwoPhaseCommit(Connections):
    """prepare / prepare_many / commit / abort / sweep. Each call is one write transaction; an
    ``sqlite3.Error`` (e.g. ``OperationalError`` when the disk is full) rolls it back and is raised."""

    async def prepare(self, txn_id: str, chunks: Sequence[tuple[bytes, bytes | memoryview]]) -> PrepareResult:
        """Phase 1: store ``(digest, data)`` pairs as pending under ``txn_id``. The caller has verified
        every digest. A chunk already committed is not written again: it is touched and pinned."""
        return (await self.prepare_many([(txn_id, chunks)]))[0]

    async def prepare_many(self, sections: Sequence[tuple[str, Sequence[tuple[bytes, bytes | memoryview]]]]
                           ) -> list[PrepareResult]:
        """Phase 1 for several txns in ONE write transaction (``/chunks/prepare-many``): each
        ``(txn_id, chunks)`` section is prepared as :meth:`prepare` would, in order, and gets its own
        result. A txn id may appear in several sections; its pieces accumulate, and a chunk already
        pending for it from an earlier section does not count again in ``stored``."""
        sections = list(sections)
        if not sections:
            return []
        now, ms = time.time(), now_ms()
        count = sum(len(chunks) for _, chunks in sections)
        size = sum(len(data) for _, chunks in sections for _, data in chunks)
        return await self._write(lambda conn: [_prepare_txn(conn, self.log, txn_id, chunks, now, ms)
                                               for txn_id, chunks in sections],
                                 small=count <= SMALL_WRITE_CHUNKS and size <= SMALL_WRITE_BYTES)

    async def commit(self, txn_ids: Iterable[str]) -> dict[str, int]:
        """Phase 3: make each txn's pending chunks committed (readable), touch every chunk it referenced
        and drop its pins. Returns, per txn, how many chunks were pending for it (pins do not count; 0 for
        an unknown or already committed txn: commit is idempotent)."""
        txn_ids = list(dict.fromkeys(txn_ids))
        now = now_ms()

        def tx(conn: sqlite3.Connection) -> dict[str, int]:
            result, new_chunks, new_bytes = {}, 0, 0
            for txn_id in txn_ids:
                count, size = conn.execute(_TXN_PENDING, (txn_id,)).fetchone()
                conn.execute(_COMMIT_TXN, (txn_id, now))
                result[txn_id] = conn.execute(_TXN_PENDING_COUNT, (txn_id,)).fetchone()[0]
                conn.execute(_DROP_TXN, (txn_id,))
                new_chunks, new_bytes = new_chunks + count, new_bytes + int(size)
            add_counters(conn, new_chunks, new_bytes)
            return result

        return await self._write(tx, small=len(txn_ids) <= SMALL_WRITE_TXNS)

    async def abort(self, txn_ids: Iterable[str]) -> dict[str, int]:
        """Drop each txn: its pins, its references, and its pending chunks no other open txn references.
        Returns, per txn, how many chunks were pending for it. Committed chunks are never deleted."""
        txn_ids = list(dict.fromkeys(txn_ids))
        return await self._write(lambda conn: _abort(conn, txn_ids), small=len(txn_ids) <= SMALL_WRITE_TXNS)

    async def sweep(self, ttl: float) -> list[str]:
        """Abort every txn with pending data older than ``ttl`` seconds (reference design: pending writes
        not finalized within 10 minutes are deleted). Returns the aborted txn ids."""

        def tx(conn: sqlite3.Connection) -> list[str]:
            # A scan, not an index: txn_chunks only holds open txns, and an index on created_at cost
            # ~15 % of prepare time (measured) to speed up a query that runs once a minute.
            rows = conn.execute(
                "SELECT txn_id FROM txn_chunks GROUP BY txn_id HAVING min(created_at) < ?",
                (time.time() - ttl,)).fetchall()
            txn_ids = [r[0] for r in rows]
            _abort(conn, txn_ids)
            return txn_ids

        return await self._write(tx)


def _prepare_txn(conn: sqlite3.Connection, segments: SegmentLog, txn_id: str,
                 chunks: Sequence[tuple[bytes, bytes | memoryview]], now: float, ms: int) -> PrepareResult:
    """The body of one txn's prepare, inside the caller's write transaction: the chunks not stored yet are
    appended as one contiguous batch, then indexed as pending."""
    fresh: dict[bytes, bytes | memoryview] = {}  # a duplicate digest in the batch is stored once
    for digest, data in chunks:
        fresh.setdefault(digest, data)
    known = lookup(conn, list(fresh))
    new = [(d, data) for d, data in fresh.items() if d not in known]
    ids: dict[bytes, int] = {}
    if new:
        segment, offsets = append_records(conn, segments, [data for _, data in new])
        first = next_chunk_id(conn)
        conn.executemany(INSERT_ROW, [(first + i, key_of(d), d[8:], PENDING, segment, offset, len(data), ms)
                                      for i, ((d, data), offset) in enumerate(zip(new, offsets))])
        ids = {d: first + i for i, (d, _) in enumerate(new)}
    committed = [row.id for row in known.values() if row.state == COMMITTED]
    conn.executemany(_TOUCH, [(ms, cid) for cid in committed])
    pending_rows, pin_rows = [], []
    for d in fresh:
        row = known.get(d)
        if row is not None and row.state == COMMITTED:
            # a committed hit is a pin (pin = 1): it keeps GC away until the txn ends
            pin_rows.append((txn_id, row.id, now, 1))
        else:
            pending_rows.append((txn_id, ids[d] if row is None else row.id, now, 0))
    # ``stored`` counts the txn's distinct pending chunks this call added, exactly what commit will
    # count: a digest repeated within the batch, or sent again in a later batch (or section) of the same
    # txn, is counted once.
    stored = conn.executemany(_INSERT_TXN_CHUNK, pending_rows).rowcount if pending_rows else 0
    if pin_rows:
        conn.executemany(_INSERT_TXN_CHUNK, pin_rows)
    return PrepareResult(stored=stored, already_committed=len(pin_rows))


def _abort(conn: sqlite3.Connection, txn_ids: list[str]) -> dict[str, int]:
    """Abort each of ``txn_ids`` inside the caller's write transaction; per txn, how many chunks were
    pending for it. The records of the dropped chunks become dead bytes for compaction."""
    result, now = {}, now_ms()
    for txn_id in txn_ids:
        delete_rows(conn, [Row(*r) for r in conn.execute(_ABORTABLE, (txn_id,))])
        # Unpinning touches, like a commit: GC's race rule needs every unpin after t0 to be seen.
        conn.execute(_TOUCH_TXN, (txn_id, now))
        result[txn_id] = conn.execute(_TXN_PENDING_COUNT, (txn_id,)).fetchone()[0]
        conn.execute(_DROP_TXN, (txn_id,))
    return result
