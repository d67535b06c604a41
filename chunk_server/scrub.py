"""Scrub and read repair (docs/failure-handling.md, "Scrub and read repair"; GFS §5.2; Garage
``block/repair.rs``).

A background task re-reads committed chunks in rowid order at ``SCRUB_BYTES_PER_SEC``, recomputes their
SHA-256 and quarantines a mismatch; a good copy is then fetched from the chunk's other read candidates
(``POST /chunks/read``, hash-checked) and stored committed. ``POST /chunks/verify`` runs the same check at
once (:meth:`Scrubber.verify`). Progress and counters live in the store's ``meta`` table.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import defaultdict

from chunk_server.pacing import TokenBucket
from chunk_server.store import ChunkStore
from shared.errors import RingFSError
from shared.rpc.chunk_client import ChunkClient
from shared.rpc.ring_cache import RingCache

log = logging.getLogger("ringfs.chunk_server.scrub")

# Chunks re-hashed per step: 256 KiB of 1 KiB chunks, small enough that pacing stays smooth.
SCRUB_BATCH = 256
RETRY_DELAY = 5.0  # seconds after an unexpected error before the loop goes on
RING_WAIT = 10.0  # seconds a repair waits for the first ring fetch
COUNTERS = ("scrubbed", "corrupt", "repaired", "quarantined")
CURSOR, PASS, LAST_PASS = "scrub.cursor", "scrub.pass", "scrub.last_pass_completed_at"


class Scrubber:
    """Verifies chunks and repairs bad ones from their other replicas."""

    def __init__(self, store: ChunkStore, rings: RingCache, chunks: ChunkClient, server_id: str,
                 bytes_per_sec: float, interval: float) -> None:
        self.store, self.rings, self.chunks, self.server_id = store, rings, chunks, server_id
        self.bucket = TokenBucket(bytes_per_sec)
        self.interval = interval
        self._lock = asyncio.Lock()  # a verify request and the background pass never repair the same batch twice

    async def verify(self, digests: list[bytes]) -> dict[str, int]:
        """Re-hash the committed copies of ``digests`` now; quarantine the bad ones and repair them.
        Returns ``{"checked", "corrupt", "repaired"}`` (counts of chunks)."""
        datas = await self.store.read_many(digests)
        held = [(d, data) for d, data in zip(digests, datas) if data is not None]
        return await self._check(held)

    async def _check(self, held: list[tuple[bytes, bytes]]) -> dict[str, int]:
        bad = [d for d, data in held if hashlib.sha256(data).digest() != d]
        corrupt = repaired = 0
        if bad:
            async with self._lock:
                removed = await self.store.quarantine(bad)  # re-checked inside the write txn
                corrupt = removed.count
                log.warning("quarantined %d corrupt chunks", corrupt, extra={"chunks": corrupt})
                repaired = await self.repair(removed.digests)
        await self.store.set_meta(add={"scrubbed": len(held), "corrupt": corrupt, "quarantined": corrupt,
                                       "repaired": repaired})
        return {"checked": len(held), "corrupt": corrupt, "repaired": repaired}

    async def repair(self, digests: list[bytes]) -> int:
        """Fetch good copies of ``digests`` from their other read candidates (one request per server per
        round, best candidate first) and store them committed. Returns how many were repaired."""
        if not digests:
            return 0
        try:  # just after a restart the first ring fetch may still be under way
            placement = self.rings.current or await asyncio.wait_for(self.rings.wait_ready(), RING_WAIT)
        except asyncio.TimeoutError:
            log.error("no ring yet: %d quarantined chunks wait for anti-entropy to restore them", len(digests))
            return 0
        ring, rf = placement.ring, placement.replication_factor
        candidates = {d: [s for s in ring.read_candidates(d, rf) if s.server_id != self.server_id]
                      for d in digests}
        missing, repaired = set(digests), 0
        while missing:
            batches: dict[str, list[bytes]] = defaultdict(list)
            urls: dict[str, str] = {}
            for d in missing:
                if candidates[d]:
                    server = candidates[d].pop(0)
                    batches[server.server_id].append(d)
                    urls[server.server_id] = server.url
            if not batches:
                break
            results = await asyncio.gather(*(self.chunks.rpc_read_verified(urls[sid], ds) for sid, ds in batches.items()),
                                           return_exceptions=True)
            found: dict[bytes, bytes] = {}
            for sid, result in zip(batches, results):
                if isinstance(result, RingFSError):
                    log.warning("repair read from %s failed: %s", sid, result)
                elif isinstance(result, BaseException):
                    raise result
                else:
                    found.update(result)
            if found:
                repaired += await self.store.replicate(list(found.items()))
                missing -= found.keys()
        if missing:
            log.error("%d corrupt chunks could not be repaired from any replica", len(missing))
        return repaired

    async def run(self) -> None:
        """Scrub forever: one pass over every committed chunk, then ``interval`` seconds of rest."""
        await self.rings.wait_ready()  # repairs need the ring
        while True:
            try:
                if not await self.step():
                    await asyncio.sleep(self.interval)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scrub step failed; retrying")
                await asyncio.sleep(RETRY_DELAY)

    async def step(self) -> bool:
        """Scrub the next batch; False when the pass just completed (the cursor went back to 0)."""
        meta = await self.store.get_meta([CURSOR])
        cursor = int(meta.get(CURSOR, 0))
        rows = await self.store.iter_committed(cursor, SCRUB_BATCH, with_data=True)
        if not rows:
            await self.store.set_meta({CURSOR: 0, LAST_PASS: time.time()}, add={PASS: 1})
            return False
        await self.bucket.consume(sum(len(data) for _, _, data in rows))
        await self._check([(d, data) for _, d, data in rows])
        await self.store.set_meta({CURSOR: rows[-1][0]})
        return True
