"""Garbage collection: mark and sweep with a touch time (docs/failure-handling.md, "Garbage collection").

A round: ``t0 = now``; candidates are committed chunks with no open txn pin and ``touched_at < t0 -
GC_GRACE``; the leader says which are unreferenced (``POST /gc/unreferenced``); one store write
transaction deletes those that still have no pin and ``touched_at < t0``; compaction later gives their
segment space back (docs/chunk-store.md). A chunk pinned or touched after ``t0`` survives (the race rule
in the design doc). An APScheduler job every ``GC_INTERVAL`` seconds.
"""

from __future__ import annotations

import logging
import time

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from chunk_server.store import ChunkStore
from shared.errors import RingFSError
from shared.rpc.leader_client import LeaderClient

log = logging.getLogger("ringfs.chunk_server.gc")

# Candidates asked about per leader request: 512 KiB of digests, far below the leader's 2M-digest limit,
# and one write transaction of at most this many deletes so writers are not held off for long.
GC_BATCH = 16384
JOB_ID = "gc"


class GarbageCollector:
    """One GC round at a time; counters ``gc_deleted``, ``gc_bytes``, ``gc_rounds`` in ``meta``."""

    def __init__(self, store: ChunkStore, leader: LeaderClient, grace: float) -> None:
        self.store, self.leader, self.grace = store, leader, grace

    async def run_round(self) -> tuple[int, int]:
        """One round; returns ``(chunks deleted, bytes deleted)``. A leader error ends the round early
        (logged); the next round retries."""
        t0 = time.time()
        after, deleted, freed = 0, 0, 0
        try:
            while True:
                rows = await self.store.gc_candidates(t0 - self.grace, GC_BATCH, after_rowid=after)
                if not rows:
                    break
                after = rows[-1][0]
                unreferenced = await self.leader.rpc_gc_unreferenced([d for _, d in rows])
                if unreferenced:
                    removed = await self.store.gc_delete(unreferenced, t0)
                    deleted, freed = deleted + removed.count, freed + removed.bytes
                    await self.store.set_meta(add={"gc_deleted": removed.count, "gc_bytes": removed.bytes})
        except RingFSError as exc:
            log.warning("GC round stopped early: %s", exc)
        await self.store.set_meta(add={"gc_rounds": 1})
        if deleted:
            log.info("GC deleted %d unreferenced chunks (%d bytes)", deleted, freed,
                     extra={"chunks": deleted, "bytes": freed})
        return deleted, freed


def schedule_gc(scheduler: AsyncIOScheduler, gc: GarbageCollector, interval: float) -> None:
    """Run :meth:`GarbageCollector.run_round` every ``interval`` seconds (one at a time)."""
    scheduler.add_job(gc.run_round, "interval", seconds=interval, id=JOB_ID, max_instances=1, coalesce=True,
                      misfire_grace_time=None)
