"""The pending sweeper job: name mappings not committed within ``PENDING_TTL`` are deleted (the
reference design: "pending writes or name mappings not finalized within 10 minutes are automatically
deleted"). The chunk servers sweep their own pending chunks on the same TTL."""

from __future__ import annotations

import logging

from leader import versions
from leader.store import Store

log = logging.getLogger("ringfs.leader.sweeper")


async def sweep_once(store: Store, pending_ttl: float) -> int:
    """One sweep (the APScheduler job); returns how many pending versions were deleted, never raises."""
    try:
        n = await versions.sweep_pending(store, pending_ttl)
    except Exception:
        log.exception("pending sweep failed")
        return 0
    if n:
        log.info("swept %d pending version(s) older than %.0f s", n, pending_ttl)
    return n
