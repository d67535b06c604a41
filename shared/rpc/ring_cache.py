"""The one cached view of the ring, for user apps and chunk servers.

Reference design: the leader "provides hash ring positions and the list of chunk servers"; the user
"identifies the appropriate chunk servers using a hash ring and binary search". The ring is fetched from
the leader (``GET /ring``) and trusted for ``ttl`` seconds, or until any leader reply carries a newer ring
epoch (``X-Ring-Epoch``), whichever comes first. The TTL also picks up health changes (unhealthy servers
get no new writes) that do not change the epoch.

* User apps call :meth:`RingCache.get` on the hot path: cheap while fresh, one fetch when stale.
* Chunk servers run :meth:`RingCache.run` as a background task (a fetch every ``ttl`` seconds) and read
  :attr:`RingCache.current` from their jobs; :meth:`RingCache.wait_ready` waits for the first fetch and
  :meth:`RingCache.wait_changed` for an epoch change.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from shared.chunk_size import policy_chunk_size
from shared.errors import BadRequest, RingFSError
from shared.protocol.models import RingView
from shared.ring import Ring
from shared.rpc.leader_client import LeaderClient

log = logging.getLogger("ringfs.ring_cache")


@dataclass(frozen=True)
class Placement:
    """A ring snapshot with the cluster policy it came with."""

    ring: Ring
    replication_factor: int
    chunk_size: int
    min_chunk_size: int
    max_chunk_size: int
    min_write_replicas: int = 1
    target_chunks_per_file: int = 0  # the chunk-size policy (shared/chunk_size.py); 0 = off
    streamed_chunk_size: int = 0

    @classmethod
    def from_view(cls, view: RingView) -> "Placement":
        return cls(Ring.from_view(view), view.replication_factor, view.chunk_size, view.min_chunk_size,
                   view.max_chunk_size, min(view.min_write_replicas, view.replication_factor),
                   view.target_chunks_per_file, view.streamed_chunk_size or view.chunk_size)

    @property
    def epoch(self) -> int:
        return self.ring.epoch

    @property
    def policy_threshold(self) -> int:
        """Bytes of an upload of unknown size to buffer before its chunk size is chosen: past this the
        policy no longer gives ``chunk_size`` (0 when the policy is off)."""
        return self.chunk_size * self.target_chunks_per_file

    def chunk_size_for_upload(self, requested: int | None, size: int | None = None) -> int:
        """The chunk size (bytes) of a new upload: a ``?chunk_size=`` within the leader's bounds, else the
        chunk-size policy for a ``size``-byte file (``shared/chunk_size.py``), else, with the size unknown
        and past :attr:`policy_threshold`, ``streamed_chunk_size``. Raises :class:`BadRequest` for a
        ``requested`` size outside ``[min_chunk_size, max_chunk_size]``."""
        if requested is None:
            if size is None:
                return self.streamed_chunk_size if self.target_chunks_per_file else self.chunk_size
            return policy_chunk_size(size, self.chunk_size, self.max_chunk_size, self.target_chunks_per_file)
        if not self.min_chunk_size <= requested <= self.max_chunk_size:
            raise BadRequest(
                f"chunk_size must be between {self.min_chunk_size} and {self.max_chunk_size} bytes, got {requested}"
            )
        return requested


class RingCache:
    """Keeps a :class:`Placement` fresh from the leader behind ``leader``."""

    def __init__(self, leader: LeaderClient, ttl: float) -> None:
        self.leader = leader
        self.ttl = ttl
        self._placement: Placement | None = None
        self._fetched_at = 0.0
        self._seen_epoch = -1
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()
        leader.on_epoch = self.note_epoch

    @property
    def current(self) -> Placement | None:
        """The last placement fetched (``None`` before the first fetch), whatever its age."""
        return self._placement

    def note_epoch(self, epoch: int) -> None:
        """Called with the epoch of every leader reply; a newer one makes the cache stale."""
        if epoch > self._seen_epoch:
            self._seen_epoch = epoch

    def invalidate(self) -> None:
        self._fetched_at = 0.0

    def _fresh(self) -> bool:
        p = self._placement
        return p is not None and time.monotonic() - self._fetched_at < self.ttl and p.epoch >= self._seen_epoch

    async def get(self) -> Placement:
        """A placement no older than ``ttl``. Raises what the leader call raises (:class:`Unavailable`)."""
        if self._fresh():
            return self._placement  # type: ignore[return-value]
        async with self._lock:
            if not self._fresh():
                self._store(Placement.from_view(await self.leader.rpc_ring()))
        return self._placement  # type: ignore[return-value]

    def _store(self, placement: Placement) -> None:
        old = self._placement
        self._placement, self._fetched_at = placement, time.monotonic()
        self.note_epoch(placement.epoch)
        if old is None or old.epoch != placement.epoch:
            log.info("ring epoch %s -> %d (%d members)", old.epoch if old else None, placement.epoch,
                     len(placement.ring))
            self._changed.set()

    async def refresh(self) -> Placement | None:
        """Fetch now; on failure keep the last placement (logged) and return it."""
        try:
            async with self._lock:
                self._store(Placement.from_view(await self.leader.rpc_ring()))
        except RingFSError as exc:
            log.warning("cannot fetch the ring: %s", exc)
        return self._placement

    async def wait_ready(self) -> Placement:
        """The placement, waiting for the first successful fetch."""
        while self._placement is None:
            await self.wait_changed()
        return self._placement

    async def wait_changed(self) -> None:
        """Return once the ring epoch changes (or the first ring arrives)."""
        self._changed.clear()
        await self._changed.wait()

    async def run(self) -> None:
        """Refresh every ``ttl`` seconds forever (a background task of a chunk server)."""
        while True:
            await self.refresh()
            await asyncio.sleep(self.ttl)
