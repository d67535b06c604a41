"""Compaction: give back the space of dead records by copying a segment's live records to the active
segment and deleting the old file (Haystack §3.4.3; SeaweedFS ``volume.vacuum``; Bitcask merge).

Records die when GC, handoff or quarantine delete a committed chunk and when an abort or the sweep drops
a pending one; the index then takes them off their segment's ``live_bytes``. A sealed segment whose live
bytes fall below ``live_ratio`` of its size is compacted:

1. Its records are read in order, ``BATCH_BYTES`` at a time (on a reader thread), each checked against
   its CRC and hashed to its digest.
2. One write transaction per batch: the records whose index row still names this segment and offset are
   live (pending or committed alike: a pending chunk moves with its txn references untouched); they
   are appended to the active segment as one batch and their rows re-pointed there. A chunk deleted,
   moved or re-stored meanwhile is simply not live any more. A crash before the commit leaves the rows on
   the old copy (the new bytes are an orphaned tail, cut off on open); after it, on the new one.
3. When the segment's ``live_bytes`` reaches 0, its row is deleted in one transaction and then its file.
   A crash between the two leaves a file no row names, deleted on open (recovery.py).

A record that fails its CRC stops the pass over that segment, which stays as it is: compaction never
drops a chunk it could not read; scrub quarantines the corrupt chunk and repair brings a good copy.
"""

from __future__ import annotations

import hashlib
import asyncio
import logging
import sqlite3
import zlib
from dataclasses import dataclass
from typing import Awaitable, Callable

from .connections import Connections
from .schema import add_live_bytes, append_records, lookup
from .segments import HEADER_SIZE, RECORD_HEADER, SegmentLog, record_size

log = logging.getLogger("ringfs.chunk_server.compaction")

BATCH_BYTES = 4 * 1024 * 1024  # record bytes moved per write transaction
LIVE_RATIO = 0.5  # compact a sealed segment once less than this fraction of it is live


@dataclass(frozen=True)
class Compacted:
    """Outcome of compacting one segment: chunks and record bytes moved, file bytes freed (0 when the
    segment could not be finished)."""

    segment: int
    moved_chunks: int
    moved_bytes: int
    freed_bytes: int


class Compaction(Connections):
    """compaction_candidates / compact_segment."""

    async def compaction_candidates(self, live_ratio: float = LIVE_RATIO) -> list[int]:
        """Sealed segments with ``live_bytes < live_ratio * total_bytes``, emptiest first."""
        return await self._read(lambda conn: [r[0] for r in conn.execute(
            "SELECT id FROM segments WHERE sealed = 1 AND live_bytes < ? * total_bytes "
            "ORDER BY CAST(live_bytes AS REAL) / max(total_bytes, 1), id", (live_ratio,))])

    async def compact_segment(self, segment: int,
                              pace: Callable[[int], Awaitable[None]] | None = None) -> Compacted:
        """Move ``segment``'s live records to the active segment, then delete it (module docstring).
        ``pace(n)`` is awaited after each batch of ``n`` bytes read. Raises ``sqlite3.Error`` or
        ``OSError``; whatever was committed before stays consistent."""
        row = await self._read(lambda conn: conn.execute(
            "SELECT total_bytes, sealed FROM segments WHERE id = ?", (segment,)).fetchone())
        if row is None or not row[1]:
            return Compacted(segment, 0, 0, 0)
        total, offset, moved_chunks, moved_bytes = row[0], 0, 0, 0
        while offset < total:
            records, next_offset = await self._read(lambda conn: _scan(self.log, segment, offset, total))
            if records:
                chunks, size = await self._write(lambda conn: _move_live(conn, self.log, segment, records))
                moved_chunks, moved_bytes = moved_chunks + chunks, moved_bytes + size
            if next_offset is None:
                log.warning("compaction of segment %d stopped at offset %d: the record there fails its "
                            "check; scrub will quarantine it", segment, offset)
                return Compacted(segment, moved_chunks, moved_bytes, 0)
            if pace is not None:
                await pace(next_offset - offset)
            offset = next_offset
        if not await self._write(lambda conn: _drop_if_empty(conn, segment)):
            return Compacted(segment, moved_chunks, moved_bytes, 0)
        self.log.remove(segment)
        # the index's freed pages back to the file system too (executescript steps the pragma to the end)
        await asyncio.get_running_loop().run_in_executor(self._writer_pool, self._incremental_vacuum)
        return Compacted(segment, moved_chunks, moved_bytes, total)


def _scan(segments: SegmentLog, segment: int, offset: int, total: int
          ) -> tuple[list[tuple[int, bytes, memoryview]], int | None]:
    """The records from ``offset`` on, at least one and about ``BATCH_BYTES``, as ``(offset, digest, data)``,
    and the offset after the last; ``None`` as that offset if a record fails its length or CRC check."""
    want = min(BATCH_BYTES, total - offset)
    header = segments.read(segment, offset, HEADER_SIZE)
    want = max(want, min(total - offset, record_size(RECORD_HEADER.unpack(header)[0])))
    buf = memoryview(segments.read(segment, offset, want))
    records, position = [], 0
    sha, crc32 = hashlib.sha256, zlib.crc32
    while position + HEADER_SIZE <= len(buf):
        length, crc = RECORD_HEADER.unpack_from(buf, position)
        end = position + HEADER_SIZE + length
        if offset + end > total:
            return records, None
        if end > len(buf):
            break
        data = buf[position + HEADER_SIZE : end]
        if crc32(data) != crc:
            return records, None
        records.append((offset + position, sha(data).digest(), data))
        position = end
    return records, offset + position


def _move_live(conn: sqlite3.Connection, segments: SegmentLog, segment: int,
               records: list[tuple[int, bytes, memoryview]]) -> tuple[int, int]:
    """Re-point the rows of the live ``records`` of ``segment`` to copies appended to the active segment,
    inside the caller's write transaction; ``(chunks, record bytes)`` moved."""
    found = lookup(conn, [digest for _, digest, _ in records], where=f"segment = {int(segment)}")
    live = [(found[digest], data) for offset, digest, data in records
            if digest in found and found[digest].offset == offset]
    if not live:
        return 0, 0
    new_segment, offsets = append_records(conn, segments, [data for _, data in live])
    conn.executemany("UPDATE chunks SET segment = ?, offset = ? WHERE id = ?",
                     [(new_segment, new_offset, row.id) for (row, _), new_offset in zip(live, offsets)])
    size = sum(record_size(row.size) for row, _ in live)
    add_live_bytes(conn, {segment: -size})
    return len(live), size


def _drop_if_empty(conn: sqlite3.Connection, segment: int) -> bool:
    """Delete ``segment``'s row if no chunk lives in it any more; whether it did."""
    return conn.execute("DELETE FROM segments WHERE id = ? AND sealed = 1 AND live_bytes = 0",
                        (segment,)).rowcount == 1

