"""Background compaction of the chunk store's segments (chunk_server/store/compaction.py has the
algorithm; docs/chunk-store.md the layout and its crash rules).

A round every ``COMPACTION_INTERVAL`` seconds compacts every sealed segment less than
``COMPACTION_LIVE_RATIO`` live, emptiest first, reading at most ``COMPACTION_BYTES_PER_SEC`` so client
I/O keeps the disk. Counters ``compacted_segments``, ``compacted_bytes`` (file bytes freed) and
``compaction_moved_bytes`` go to the store's ``meta`` table and ``/stats``.
"""

from __future__ import annotations

import logging
import sqlite3

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from chunk_server.pacing import TokenBucket
from chunk_server.store import ChunkStore

log = logging.getLogger("ringfs.chunk_server.compaction")

JOB_ID = "compaction"


class Compactor:
    """One compaction round at a time over ``store``."""

    def __init__(self, store: ChunkStore, live_ratio: float, bytes_per_sec: float) -> None:
        self.store, self.live_ratio, self.bytes_per_sec = store, live_ratio, bytes_per_sec

    async def run_round(self) -> int:
        """Compact every candidate segment; returns the file bytes freed. An I/O or SQLite error ends the
        round (logged); what was committed before it stays consistent and the next round goes on."""
        bucket = TokenBucket(self.bytes_per_sec)
        freed = 0
        try:
            for segment in await self.store.compaction_candidates(self.live_ratio):
                done = await self.store.compact_segment(segment, pace=bucket.consume)
                freed += done.freed_bytes
                await self.store.set_meta(add={"compacted_segments": int(done.freed_bytes > 0),
                                               "compacted_bytes": done.freed_bytes,
                                               "compaction_moved_bytes": done.moved_bytes})
                if done.freed_bytes:
                    log.info("compacted segment %d: moved %d live chunks (%d bytes), freed %d bytes",
                             segment, done.moved_chunks, done.moved_bytes, done.freed_bytes,
                             extra={"segment": segment, "moved": done.moved_bytes, "freed": done.freed_bytes})
        except (OSError, sqlite3.Error) as exc:
            log.warning("compaction round stopped early: %s", exc)
        return freed


def schedule_compaction(scheduler: AsyncIOScheduler, compactor: Compactor, interval: float) -> None:
    """Run :meth:`Compactor.run_round` every ``interval`` seconds (one at a time)."""
    scheduler.add_job(compactor.run_round, "interval", seconds=interval, id=JOB_ID, max_instances=1,
                      coalesce=True, misfire_grace_time=None)
