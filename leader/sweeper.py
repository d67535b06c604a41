"""The leader's periodic clean-up jobs (APScheduler, every ``SWEEP_INTERVAL`` s).

* Pending sweep: name mappings not committed within ``PENDING_TTL`` are deleted (the reference design:
  "pending writes or name mappings not finalized within 10 minutes are automatically deleted") and their
  transaction ids recorded as expired, so a late commit answers 410 (``leader/txns.py``). The chunk
  servers sweep their own pending chunks on the same TTL.
* Trash purge: tombstoned versions older than ``TRASH_RETENTION`` are deleted (docs/failure-handling.md,
  "Trash"); their chunks then become unreferenced and the chunk servers' GC collects them. The same job
  forgets expired transaction ids older than ``txns.EXPIRED_TXN_RETENTION``.
* Multipart expiry: uploads not completed within ``MULTIPART_TTL`` are aborted, their parts dropped
  (``leader/multipart.py``); the parts' chunks then become unreferenced and GC collects them.
"""

from __future__ import annotations

import logging
from typing import Awaitable

from leader import multipart, trash, txns
from leader.store import Store

log = logging.getLogger("ringfs.leader.sweeper")


async def _quietly(what: str, job: Awaitable[int]) -> int:
    """``await job`` (a clean-up returning how many rows it dropped); a failure is logged, never raised,
    and counts 0."""
    try:
        return await job
    except Exception:
        log.exception("%s failed", what)
        return 0


async def sweep_once(store: Store, pending_ttl: float) -> int:
    """One sweep (the APScheduler job); returns how many pending versions were deleted, never raises."""
    n = await _quietly("pending sweep", txns.sweep_pending(store, pending_ttl))
    if n:
        log.info("swept %d pending version(s) older than %.0f s", n, pending_ttl)
    return n


async def purge_trash_once(store: Store, retention: float) -> int:
    """One trash purge (the APScheduler job), then the purge of old expired transaction ids; returns how
    many tombstoned versions were dropped, never raises."""
    n = await _quietly("trash purge", trash.purge_expired(store, retention))
    if n:
        log.info("purged %d trashed version(s) deleted more than %.0f s ago", n, retention)
    forgotten = await _quietly("purge of expired transaction ids", txns.forget_expired(store))
    if forgotten:
        log.info("forgot %d transaction id(s) expired more than %.0f s ago", forgotten, txns.EXPIRED_TXN_RETENTION)
    return n


async def expire_uploads_once(store: Store, ttl: float) -> int:
    """One multipart expiry (the APScheduler job); returns how many uploads were aborted, never raises."""
    n = await _quietly("multipart expiry", multipart.expire_uploads(store, ttl))
    if n:
        log.info("aborted %d multipart upload(s) older than %.0f s", n, ttl)
    return n
