"""The leader's periodic clean-up jobs (APScheduler, every ``SWEEP_INTERVAL`` s).

* Pending sweep: name mappings not committed within ``PENDING_TTL`` are deleted (the reference design:
  "pending writes or name mappings not finalized within 10 minutes are automatically deleted"). The
  chunk servers sweep their own pending chunks on the same TTL.
* Trash purge: tombstoned versions older than ``TRASH_RETENTION`` are deleted (docs/failure-handling.md,
  "Trash"); their chunks then become unreferenced and the chunk servers' GC collects them.
"""

from __future__ import annotations

import logging

from leader import trash, versions
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


async def purge_trash_once(store: Store, retention: float) -> int:
    """One trash purge (the APScheduler job); returns how many tombstoned versions were dropped, never
    raises."""
    try:
        n = await trash.purge_expired(store, retention)
    except Exception:
        log.exception("trash purge failed")
        return 0
    if n:
        log.info("purged %d trashed version(s) deleted more than %.0f s ago", n, retention)
    return n
