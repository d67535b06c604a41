"""The chunk server's view of the ring, fetched from the leader (``GET /ring``) every ``RING_REFRESH``
seconds (docs/failure-handling.md, "Anti-entropy and handoff").

``Ring`` comes from ``shared.ring``; removed servers are not members. The jobs read ``ring_client.ring``
(``None`` until the first fetch) and ``replication_factor``.
"""

from __future__ import annotations

import asyncio
import logging
from chunk_server.peers import PeerClient
from shared.errors import RingFSError
from shared.ring import Ring

log = logging.getLogger("ringfs.chunk_server.ring")


def ring_from_view(view: dict) -> tuple[Ring, int]:
    """``(Ring, replication factor)`` from the leader's ``GET /ring`` JSON (``shared.protocol.RingView``)."""
    return Ring.from_view(view), int(view["replication_factor"])


class RingClient:
    """Keeps the latest ring; ``server_id`` is this server's own id."""

    def __init__(self, peers: PeerClient, server_id: str, refresh: float) -> None:
        self.peers = peers
        self.server_id = server_id
        self.refresh_interval = refresh
        self.ring: Ring | None = None
        self.replication_factor = 0
        self._changed = asyncio.Event()

    async def refresh(self) -> Ring | None:
        """Fetch the ring once; on failure keep the last one (logged) and return it."""
        try:
            ring, rf = ring_from_view(await self.peers.rpc_get_ring())
        except (RingFSError, KeyError, ValueError, TypeError) as exc:
            log.warning("cannot fetch the ring: %s", exc)
            return self.ring
        old = self.ring.epoch if self.ring is not None else None
        self.ring, self.replication_factor = ring, rf
        if ring.epoch != old:
            log.info("ring epoch %s -> %d (%d members)", old, ring.epoch, len(ring))
            self._changed.set()
        return ring

    async def wait_ready(self) -> Ring:
        """The ring, waiting for the first successful fetch."""
        while self.ring is None:
            self._changed.clear()
            await self._changed.wait()
        return self.ring

    async def run(self) -> None:
        """Refresh forever (a task of the app lifespan)."""
        while True:
            await self.refresh()
            await asyncio.sleep(self.refresh_interval)
