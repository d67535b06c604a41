"""Maintenance of the chunk store's committed chunks, outside the two-phase commit: repair and
anti-entropy pushes (``replicate``), the rowid walk of anti-entropy and scrub (``iter_committed``),
scrub's ``quarantine``, GC (``gc_candidates``, ``gc_delete``) and handoff (``delete_if_replicated``).
docs/failure-handling.md describes each job; the space they free is reclaimed by compaction.py.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from dataclasses import dataclass
from typing import Sequence

from .connections import Connections
from .reads import read_rows
from .schema import (
    COMMITTED, INSERT_ROW, PENDING, ROW, Row, add_counters, append_records, delete_rows, key_of, lookup,
    next_chunk_id, now_ms,
)

_UNPINNED = "id NOT IN (SELECT chunk_id FROM txn_chunks)"


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
    ``sqlite3.Error`` or ``OSError`` rolls it back and is raised."""

    async def replicate(self, chunks: Sequence[tuple[bytes, bytes | memoryview]]) -> int:
        """Store ``(digest, data)`` pairs committed at once (anti-entropy push, repair). The caller has
        verified every digest. A pending copy becomes committed (and touched: it belongs to an open
        txn); a committed one is left as it is.

        A new copy is stored with ``touched_at = 0``, as old as can be: a copy made by anti-entropy or
        repair does not restart GC's grace. Otherwise garbage that one replica lacked was pushed back
        to a server that had just collected it, with a fresh touch time, and from there back to the
        others once they had collected theirs: it lived forever. GC's race rule needs only the
        touches of prepare and commit (docs/failure-handling.md). Returns how many chunks became newly
        committed here."""
        ms = now_ms()

        def tx(conn: sqlite3.Connection) -> int:
            known = lookup(conn, [d for d, _ in chunks])
            new: dict[bytes, bytes | memoryview] = {}
            promote, new_bytes = [], 0
            for digest, data in chunks:
                hit = known.get(digest)
                if hit is None:
                    if digest not in new:
                        new[digest] = data
                        new_bytes += len(data)
                elif hit.state == PENDING:
                    promote.append((ms, hit.id))
                    known[digest] = hit._replace(state=COMMITTED)
                    new_bytes += hit.size
            if new:
                segment, offsets = append_records(conn, self.log, list(new.values()))
                first = next_chunk_id(conn)
                conn.executemany(INSERT_ROW, [
                    (first + i, key_of(d), d[8:], COMMITTED, segment, offset, len(data), 0)
                    for i, ((d, data), offset) in enumerate(zip(new.items(), offsets))])
            conn.executemany("UPDATE chunks SET state = 2, touched_at = ? WHERE id = ?", promote)
            add_counters(conn, len(new) + len(promote), new_bytes)
            return len(new) + len(promote)

        return await self._write(tx)

    async def iter_committed(self, after_rowid: int, limit: int,
                             with_data: bool = False) -> list[tuple[int, bytes, bytes | memoryview | None]]:
        """Up to ``limit`` committed chunks with ``rowid > after_rowid`` in rowid order, as
        ``(rowid, digest, data or None)``: the walk of anti-entropy and scrub. With ``with_data`` a
        record whose length disagrees with its row comes back with ``b""`` as data (it hashes wrong, so
        scrub quarantines it)."""

        def query(conn: sqlite3.Connection) -> list[tuple[int, bytes, bytes | memoryview | None]]:
            rows = [Row(*r) for r in conn.execute(
                f"SELECT {ROW} FROM chunks WHERE id > ? AND state = 2 ORDER BY id LIMIT ?", (after_rowid, limit))]
            if not with_data:
                return [(r.id, r.digest, None) for r in rows]
            datas = read_rows(self.log, rows)
            return [(r.id, r.digest, b"" if data is None else data) for r, data in zip(rows, datas)]

        return await self._read(query)

    async def quarantine(self, digests: Sequence[bytes], verify: bool = True) -> Removed:
        """Move committed chunks to the ``quarantine`` table (kept for forensics, never served). With
        ``verify`` only the chunks whose data does not hash to their digest move, checked inside the write
        transaction (GFS §5.2; Garage ``block/manager.rs``)."""
        now = time.time()

        def tx(conn: sqlite3.Connection) -> Removed:
            rows = list(lookup(conn, digests, where=f"state = {COMMITTED}").values())
            datas = _read_for_check(self.log, rows)
            bad = [(r, data) for r, data in zip(rows, datas)
                   if not verify or hashlib.sha256(data).digest() != r.digest]
            conn.executemany("INSERT INTO quarantine(digest, data, size, quarantined_at) VALUES (?, ?, ?, ?)",
                             [(r.digest, bytes(data), r.size, now) for r, data in bad])
            return _delete_committed(conn, [r for r, _ in bad])

        return await self._write(tx)

    async def quarantined(self) -> list[bytes]:
        """Digests in the quarantine table, oldest first."""
        return await self._read(lambda conn: [r[0] for r in conn.execute(
            "SELECT digest FROM quarantine ORDER BY id")])

    async def gc_candidates(self, older_than: float, limit: int, after_rowid: int = 0) -> list[tuple[int, bytes]]:
        """Up to ``limit`` committed, unpinned chunks with ``touched_at < older_than`` (UNIX seconds) and
        ``rowid > after_rowid``, as ``(rowid, digest)`` in rowid order (failure-handling.md GC step 1)."""
        return await self._read(lambda conn: [(r.id, r.digest) for r in (Row(*raw) for raw in conn.execute(
            f"SELECT {ROW} FROM chunks WHERE id > ? AND state = 2 AND touched_at < ? AND {_UNPINNED} "
            "ORDER BY id LIMIT ?", (after_rowid, older_than * 1000, limit)))])

    async def gc_delete(self, digests: Sequence[bytes], t0: float) -> Removed:
        """GC step 3, one write transaction: delete those of ``digests`` that are committed, still have
        no pin and were not touched since ``t0`` (UNIX seconds). Their records become dead bytes that
        compaction reclaims."""
        where = f"state = {COMMITTED} AND touched_at < {float(t0) * 1000!r} AND {_UNPINNED}"
        return await self._write(lambda conn: _delete_committed(conn, list(lookup(conn, digests, where).values())))

    async def delete_if_replicated(self, digests: Sequence[bytes]) -> Removed:
        """Handoff: delete committed, unpinned copies the caller has confirmed on every preference-list
        server (failure-handling.md, anti-entropy step 3)."""
        where = f"state = {COMMITTED} AND {_UNPINNED}"
        return await self._write(lambda conn: _delete_committed(conn, list(lookup(conn, digests, where).values())))


def _read_for_check(segments, rows: Sequence[Row]) -> list[bytes | memoryview]:
    """Each row's data for a hash check; ``b""`` (which hashes wrong) where the record cannot be read."""
    try:
        datas = read_rows(segments, rows)
    except OSError:
        datas = [None] * len(rows)
    return [b"" if data is None else data for data in datas]


def _delete_committed(conn: sqlite3.Connection, rows: Sequence[Row]) -> Removed:
    """Delete committed chunks and keep the counters exact."""
    delete_rows(conn, rows)
    # Pins on these rows (only quarantine removes pinned chunks) stay: the txn's counts do not change,
    # and its commit or abort drops them.
    size = sum(r.size for r in rows)
    add_counters(conn, -len(rows), -size)
    return Removed([r.digest for r in rows], size)
