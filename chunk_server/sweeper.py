"""Background job that aborts pending transactions never finalized (reference design: "pending writes or
name mappings not finalized within 10 minutes are automatically deleted"; GFS §4.4 lazy reclamation)."""

from __future__ import annotations

import logging

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from chunk_server.store import ChunkStore

log = logging.getLogger("ringfs.chunk_server.sweeper")


async def sweep_pending(store: ChunkStore, ttl: float) -> list[str]:
    """Abort every txn whose pending chunks are older than ``ttl`` seconds; returns their ids."""
    swept = await store.sweep(ttl)
    if swept:
        log.info("swept %d expired pending txns", len(swept), extra={"txns": len(swept)})
    return swept


def schedule_sweeper(scheduler: AsyncIOScheduler, store: ChunkStore, ttl: float, interval: float) -> None:
    """Run :func:`sweep_pending` every ``interval`` seconds (one at a time; missed runs coalesce)."""
    scheduler.add_job(sweep_pending, "interval", seconds=interval, args=(store, ttl), id="sweeper",
                      max_instances=1, coalesce=True, misfire_grace_time=None)
