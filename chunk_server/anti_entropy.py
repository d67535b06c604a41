"""Anti-entropy and handoff (docs/failure-handling.md, "Anti-entropy and handoff"; Dynamo §4.6, §4.7).

Each chunk server walks its own committed chunks in rowid order, ``ANTI_ENTROPY_BATCH`` at a time, with
the ring it last fetched. Per batch: ask every other preference-list server which of the batch's chunks
it holds (``POST /chunks/exists``, one request per server), push what one lacks (``POST
/chunks/replicate``, one request per server, paced by a token bucket), and drop the copies this server
should not hold once every preference-list server has proven it holds them (``chunk_server/handoff.py``).
Progress lives in the store's ``meta`` table, so a restart resumes; a ring epoch change restarts the pass.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

from chunk_server.handoff import Handoff
from chunk_server.pacing import TokenBucket
from chunk_server.store import ChunkStore
from shared.errors import RingFSError
from shared.protocol.frames import ChunkPresence, encode_frames
from shared.ring import Ring, ServerState
from shared.rpc.chunk_client import ChunkClient
from shared.rpc.ring_cache import RingCache

log = logging.getLogger("ringfs.chunk_server.anti_entropy")

RETRY_DELAY = 5.0  # seconds after a failed step before the walk goes on
PREFIX = "ae."
KEYS = ("pass", "epoch", "cursor", "checked", "pushed", "dropped", "last_pass_completed_at")


class AntiEntropy:
    """The walk; :meth:`step` does one batch, :meth:`run` loops forever."""

    def __init__(self, store: ChunkStore, rings: RingCache, chunks: ChunkClient, server_id: str, handoff: Handoff,
                 batch: int, bytes_per_sec: float, interval: float, chunks_per_sec: float) -> None:
        self.store, self.rings, self.chunks, self.server_id = store, rings, chunks, server_id
        self.handoff = handoff
        self.batch = batch
        self.bucket = TokenBucket(bytes_per_sec)  # bytes pushed
        self.check_bucket = TokenBucket(chunks_per_sec)  # chunks compared: the walk itself costs CPU here and at peers
        self.interval = interval

    async def progress(self) -> dict[str, float | int | None]:
        """The ``anti_entropy`` object of ``/stats``."""
        meta = await self.store.get_meta([PREFIX + k for k in KEYS])
        return {k: meta.get(PREFIX + k, None if k in ("epoch", "last_pass_completed_at") else 0) for k in KEYS}

    async def run(self) -> None:
        await self.rings.wait_ready()
        while True:
            try:
                if not await self.step():
                    await self._rest()
            except asyncio.CancelledError:
                raise
            except RingFSError as exc:
                log.warning("anti-entropy step failed: %s; retrying", exc)
                await asyncio.sleep(RETRY_DELAY)
            except Exception:
                log.exception("anti-entropy step failed; retrying")
                await asyncio.sleep(RETRY_DELAY)

    async def _rest(self) -> None:
        """Pause ``interval`` seconds after a full pass, or less: a ring epoch change (a server joined or
        was removed) or a change of which servers are healthy (one came back, so copies written while it
        was down can be made now) starts the next pass at once."""
        before = _shape(self.rings.current)
        deadline = time.monotonic() + self.interval
        while (now := time.monotonic()) < deadline:
            if _shape(self.rings.current) != before:
                return
            await asyncio.sleep(min(1.0, deadline - now))

    async def step(self) -> bool:
        """Handle the next batch. False when a pass just completed (the walk then rests)."""
        placement = self.rings.current
        if placement is None:
            return False
        ring, rf = placement.ring, placement.replication_factor
        meta = await self.store.get_meta([PREFIX + "cursor", PREFIX + "epoch"])
        cursor = int(meta.get(PREFIX + "cursor", 0))
        if meta.get(PREFIX + "epoch") != ring.epoch:
            if cursor:
                log.info("ring epoch changed to %d: anti-entropy restarts its pass", ring.epoch)
            cursor = 0
            await self.store.set_meta({PREFIX + "epoch": ring.epoch, PREFIX + "cursor": 0})
        rows = await self.store.iter_committed(cursor, self.batch)
        await self.check_bucket.consume(len(rows))
        if not rows:
            await self.store.set_meta({PREFIX + "cursor": 0, PREFIX + "last_pass_completed_at": time.time()},
                                      add={PREFIX + "pass": 1})
            return False
        pushed, dropped = await self.sync([d for _, d, _ in rows], ring, rf)
        await self.store.set_meta({PREFIX + "cursor": rows[-1][0]},
                                  add={PREFIX + "checked": len(rows), PREFIX + "pushed": pushed,
                                       PREFIX + "dropped": dropped})
        return True

    async def sync(self, digests: list[bytes], ring: Ring, rf: int) -> tuple[int, int]:
        """Steps 1-3 for ``digests`` (held committed here). Returns ``(copies pushed, copies dropped)``."""
        me = self.server_id
        wanted: dict[str, list[bytes]] = defaultdict(list)  # peer -> digests it should hold
        urls: dict[str, str] = {}
        misplaced: dict[bytes, list] = {}  # digest -> its preference list, for copies this server should not hold
        for d in digests:
            pref = ring.preference_list(d, rf)
            for s in pref:
                if s.server_id != me:
                    wanted[s.server_id].append(d)
                    urls[s.server_id] = s.url
            if (len(pref) == rf and all(s.server_id != me for s in pref)
                    and me not in {s.server_id for s in ring.owners(d, rf)}):
                misplaced[d] = pref

        # 1. one exists request per peer
        peers = list(wanted)
        answers = await asyncio.gather(*(self.chunks.rpc_exists(urls[p], wanted[p]) for p in peers),
                                       return_exceptions=True)
        confirmed: dict[str, set[bytes]] = defaultdict(set)
        lacking: dict[str, list[bytes]] = {}
        for peer, answer in zip(peers, answers):
            if isinstance(answer, RingFSError):
                log.warning("anti-entropy: exists on %s failed: %s", peer, answer)
                continue
            if isinstance(answer, BaseException):
                raise answer
            committed = ChunkPresence.COMMITTED
            confirmed[peer] = {d for d, b in zip(wanted[peer], answer) if b == committed}
            lacking[peer] = [d for d in wanted[peer] if d not in confirmed[peer]]

        # 2. one replicate request per peer, paced
        pushed = 0
        need = sorted({d for ds in lacking.values() for d in ds})
        if need:
            data = dict(zip(need, await self.store.read_many(need)))
            for peer, ds in lacking.items():
                frames = [(d, data[d]) for d in ds if data.get(d) is not None]
                if not frames:
                    continue
                body = encode_frames(frames)
                await self.bucket.consume(len(body))
                try:
                    await self.chunks.rpc_replicate(urls[peer], body)
                except RingFSError as exc:
                    log.warning("anti-entropy: replicate to %s failed: %s", peer, exc)
                    continue
                pushed += len(frames)
                confirmed[peer].update(d for d, _ in frames)
            if pushed:
                log.info("anti-entropy pushed %d chunk copies", pushed, extra={"chunks": pushed})

        # 3. handoff: a misplaced copy goes only once every preference-list server *proves* it holds it
        # (and is an established member); claims and pushes are not enough
        candidates = {d: pref for d, pref in misplaced.items()
                      if all(d in confirmed[s.server_id] for s in pref)}
        return pushed, await self.handoff.drop_proven(candidates)


def _shape(placement) -> tuple[int, frozenset[str]] | None:
    """What a pass depends on: the ring epoch and the healthy members."""
    if placement is None:
        return None
    healthy = frozenset(sid for sid, s in placement.ring.servers.items() if s.state == ServerState.HEALTHY)
    return placement.epoch, healthy
