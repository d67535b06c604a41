"""Handoff: dropping a copy this server should no longer hold, only when no member's word alone decides it
(docs/failure-handling.md, "Handoff"; Dynamo §4.6).

A copy is *misplaced* here when this server is neither among the chunk's owners nor in its preference
list. It is dropped only when, for every server of the preference list:

1. the server has been a ring member for at least ``HANDOFF_MIN_MEMBER_AGE`` seconds (a member that
   joined a moment ago, or a burst of new registrations, cannot make anybody drop anything), and
2. it *proves* it holds the chunk intact: asked with a fresh random nonce, it answers SHA-256(nonce |
   data), which this server checks against its own copy (``POST /chunks/prove``). A bare "exists" answer
   is not proof, so a member that lies, has a bug or a bad disk never causes a drop;

and drops are paced by a token bucket (``HANDOFF_DROPS_PER_SEC``), so even a rule gone wrong removes
copies slowly enough for an operator to notice (the ``dropped`` counter in ``/stats`` and ``/metrics``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import defaultdict

from chunk_server.pacing import TokenBucket
from chunk_server.store import ChunkStore
from shared.errors import RingFSError
from shared.protocol.frames import possession_proof
from shared.ring import ServerInfo
from shared.rpc.chunk_client import ChunkClient

log = logging.getLogger("ringfs.chunk_server.handoff")


class Handoff:
    """Drops proven-redundant misplaced copies of this server."""

    def __init__(self, store: ChunkStore, chunks: ChunkClient, min_member_age: float, drops_per_sec: float) -> None:
        self.store, self.chunks = store, chunks
        self.min_member_age = min_member_age
        self.bucket = TokenBucket(drops_per_sec)

    def established(self, server: ServerInfo, now: float) -> bool:
        """Whether ``server`` has been a member long enough for its proofs to count."""
        return server.joined_at is None or now - server.joined_at >= self.min_member_age

    async def drop_proven(self, misplaced: dict[bytes, list[ServerInfo]]) -> int:
        """Drop those of ``misplaced`` (digest → its preference list) that every preference-list server
        proves it holds (see the module docstring); how many copies were dropped."""
        now = time.time()
        candidates = {d: pref for d, pref in misplaced.items() if pref and all(self.established(s, now) for s in pref)}
        if not candidates:
            return 0
        own = {d: data for d, data in zip(candidates, await self.store.read_many(list(candidates))) if data is not None}
        asks: dict[str, list[bytes]] = defaultdict(list)
        urls: dict[str, str] = {}
        for d, pref in candidates.items():
            if d in own:
                for s in pref:
                    asks[s.server_id].append(d)
                    urls[s.server_id] = s.url
        nonce = secrets.token_bytes(32)
        peers = list(asks)
        answers = await asyncio.gather(*(self.chunks.rpc_prove(urls[p], nonce, asks[p]) for p in peers),
                                       return_exceptions=True)
        proven: dict[bytes, int] = defaultdict(int)  # digest -> preference-list servers that proved it
        for peer, answer in zip(peers, answers):
            if isinstance(answer, RingFSError):
                log.warning("handoff: proofs from %s failed: %s", peer, answer)
                continue
            if isinstance(answer, BaseException):
                raise answer
            for d, proof in zip(asks[peer], answer):
                if proof == possession_proof(nonce, own[d]):
                    proven[d] += 1
        drop = [d for d, pref in candidates.items() if d in own and proven[d] == len(pref)]
        if not drop:
            return 0
        await self.bucket.consume(len(drop))
        dropped = (await self.store.delete_if_replicated(drop)).count
        if dropped:
            log.info("handoff: dropped %d misplaced chunk copies, each proven by its whole preference list",
                     dropped, extra={"chunks": dropped})
        return dropped
