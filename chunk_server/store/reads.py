"""The chunk store's serving reads (``/chunks/read``, ``/chunks/exists``, ``GET /chunks/{id}``).

Kept apart from txns.py: they never write, they run beside the writer (WAL: on the event loop when small,
else on the reader threads, connections.py), and they read chunks whichever way they were stored (prepare /
commit in txns.py, replicate in maintenance.py, moved by compaction.py).

A read looks the digests up in the index, then reads each run of records that lie back to back in one
segment, in request order, with one ``pread`` (the chunks of one file were appended as one batch, so a
file is usually one run). The hash check stays with the reader of the data (the user app checks every
chunk against its digest; scrub re-hashes at rest); here the record's length is checked against the index.
"""

from __future__ import annotations

import sqlite3
from typing import Sequence

from shared.protocol.frames import ChunkPresence

from .connections import Connections
from .schema import COMMITTED, Row, lookup
from .segments import HEADER_SIZE, RECORD_HEADER, SegmentLog

MAX_RUN_BYTES = 8 * 1024 * 1024  # one pread reads at most this much (a run longer than that is split)


class Reads(Connections):
    """read_many / presence_many: batched lookups by digest, any number of digests."""

    async def read_many(self, digests: Sequence[bytes]) -> list[memoryview | None]:
        """The data of each committed chunk, ``None`` where the chunk is absent or only pending; one entry
        per digest, in order. Raises ``OSError`` on an I/O error of the segment files."""
        return await self._read_small(lambda conn: read_committed(conn, self.log, digests), len(digests))

    async def presence_many(self, digests: Sequence[bytes]) -> bytes:
        """One :class:`ChunkPresence` byte per digest, in order (the ``state`` column's value is the
        presence byte)."""
        states = await self._read_small(lambda conn: {d: r.state for d, r in lookup(conn, digests).items()},
                                        len(digests))
        absent = ChunkPresence.ABSENT
        return bytes(states.get(d, absent) for d in digests)


def read_committed(conn: sqlite3.Connection, segments: SegmentLog, digests: Sequence[bytes]
                   ) -> list[memoryview | None]:
    """:meth:`Reads.read_many` on ``conn``'s thread. A segment that compaction removed between the lookup
    and the read is looked up again (the rows then name the chunks' new place)."""
    for attempt in range(3):
        found = lookup(conn, digests, where=f"state = {COMMITTED}")
        try:
            return read_rows(segments, [found.get(d) for d in digests])
        except FileNotFoundError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def read_rows(segments: SegmentLog, rows: Sequence[Row | None]) -> list[memoryview | None]:
    """The data of each row's record (``None`` for ``None``), coalescing adjacent records into one
    ``pread``. A record whose stored length disagrees with its row is returned as ``None`` (never served;
    scrub finds it). Raises ``FileNotFoundError`` if a segment is gone, ``OSError`` on I/O errors."""
    out: list[memoryview | None] = [None] * len(rows)
    i, n = 0, len(rows)
    while i < n:
        first = rows[i]
        if first is None:
            i += 1
            continue
        j, end = i + 1, first.offset + HEADER_SIZE + first.size
        while j < n:
            nxt = rows[j]
            if nxt is None or nxt.segment != first.segment or nxt.offset != end or end - first.offset >= MAX_RUN_BYTES:
                break
            end += HEADER_SIZE + nxt.size
            j += 1
        buf = memoryview(segments.read(first.segment, first.offset, end - first.offset))
        position = 0
        for k in range(i, j):
            size = rows[k].size
            if RECORD_HEADER.unpack_from(buf, position)[0] == size:
                out[k] = buf[position + HEADER_SIZE : position + HEADER_SIZE + size]
            position += HEADER_SIZE + size
        i = j
    return out
