"""The user app's cached view of the ring (reference design: the leader "provides hash ring positions and
the list of chunk servers"; the user "identifies the appropriate chunk servers using a hash ring and
binary search").

The ring is fetched from the leader and trusted for ``RING_TTL`` seconds, or until a leader reply
carries a newer ring epoch (every leader response has ``X-Ring-Epoch``), whichever comes first. The TTL
also picks up health changes (unhealthy servers get no new writes) that do not change the epoch.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from shared.errors import BadRequest
from shared.ring import Ring
from user_app.peers import PeerClient


@dataclass(frozen=True)
class Placement:
    """A ring snapshot with the cluster policy it came with."""

    ring: Ring
    replication_factor: int
    chunk_size: int
    min_chunk_size: int
    max_chunk_size: int

    def chunk_size_for_upload(self, requested: int | None) -> int:
        """The chunk size of a new upload: the cluster default or a ``?chunk_size=`` within the leader's
        bounds. Raises :class:`BadRequest` outside them."""
        if requested is None:
            return self.chunk_size
        if not self.min_chunk_size <= requested <= self.max_chunk_size:
            raise BadRequest(
                f"chunk_size must be between {self.min_chunk_size} and {self.max_chunk_size} bytes, got {requested}"
            )
        return requested


class RingCache:
    """Keeps a :class:`Placement` fresh; ``await get()`` is cheap on the hot path."""

    def __init__(self, peers: PeerClient, ttl: float) -> None:
        self.peers = peers
        self.ttl = ttl
        self._placement: Placement | None = None
        self._fetched_at = 0.0
        self._seen_epoch = -1
        self._lock = asyncio.Lock()
        peers.on_epoch = self.note_epoch

    def note_epoch(self, epoch: int) -> None:
        """Called with the epoch of every leader reply; a newer one makes the cache stale."""
        if epoch > self._seen_epoch:
            self._seen_epoch = epoch

    def invalidate(self) -> None:
        self._fetched_at = 0.0

    def _fresh(self) -> bool:
        p = self._placement
        return (p is not None and time.monotonic() - self._fetched_at < self.ttl
                and p.ring.epoch >= self._seen_epoch)

    async def get(self) -> Placement:
        if self._fresh():
            return self._placement  # type: ignore[return-value]
        async with self._lock:
            if not self._fresh():
                self._placement = placement_from_view(await self.peers.rpc_get_ring())
                self._fetched_at = time.monotonic()
        return self._placement  # type: ignore[return-value]


def placement_from_view(view: dict) -> Placement:
    """Build a :class:`Placement` from the leader's ``GET /ring`` JSON (``shared.protocol.RingView``)."""
    return Placement(Ring.from_view(view), view["replication_factor"], view["chunk_size"], view["min_chunk_size"],
                     view["max_chunk_size"])
