"""The read path (reference design, "Read Data": metadata from the leader, servers found by binary
search on the ring, chunks requested in batches, "attempts to read from the next 3 servers on the hash
ring if failed to read from closest").

Chunks are fetched a piece at a time, each piece batched per server with servers in parallel, and a
bounded window of pieces read ahead, so a download streams in order with flat memory whatever the file
size. Every chunk is verified against its SHA-256 digest; a missing or corrupt copy, or a server that
fails, sends the chunk to its next candidate. Chunks of small files are kept in a by-digest cache
(``user_app/chunk_cache.py``), so a document many people read costs its chunk servers one read per user app.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import defaultdict, deque
from typing import AsyncGenerator, AsyncIterator

from shared.errors import Unavailable
from shared.protocol.frames import ChunkPresence, iter_frames
from shared.protocol.manifests import Manifest
from shared.protocol.rules import chunk_length, expected_chunks
from shared.ring import EXTRA_READ_CANDIDATES, ServerInfo, ServerState
from shared.rpc.chunk_client import ChunkClient
from shared.rpc.leader_client import LeaderClient
from shared.rpc.ring_cache import Placement, RingCache
from user_app.chunk_cache import ChunkCache
from user_app.manifest_leases import LeasedManifests
from user_app.metrics import BYTES_OUT, CHUNK_FALLBACKS, CORRUPT_COPIES

log = logging.getLogger("ringfs.reader")


class ChunkReader:
    """Fetches and verifies chunks; shared by all requests of a user app."""

    def __init__(self, chunks: ChunkClient, leader: LeaderClient, rings: RingCache, piece_size: int,
                 pieces_in_flight: int, cache: ChunkCache | None = None, cache_max_file: int = 0,
                 leases: LeasedManifests | None = None) -> None:
        self.chunks = chunks
        self.leader = leader
        self.rings = rings
        self.piece_size = piece_size
        self.pieces_in_flight = pieces_in_flight
        self.cache = cache or ChunkCache(0)
        self.cache_max_file = cache_max_file  # bytes: files up to this size have their chunks cached
        self._repairs: set[asyncio.Task] = set()  # read-repair calls in flight (kept from being collected)
        self.leases = leases  # path -> latest version under the leader's read leases; None: always ask

    async def open(self, path: str, version: int | None) -> Manifest:
        """Resolve ``path`` (and ``version``) to a committed version: in one leader call, or for the latest
        version from the lease cache while its lease runs (``user_app/manifest_leases.py``). Raises
        :class:`NotFound` (404) or :class:`Unavailable` (503)."""
        if version is None and self.leases is not None:
            return await self.leases.latest(path)
        return await self.leader.rpc_manifest(path, version)

    async def stream(self, view: Manifest, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Yield bytes ``start`` to ``end`` inclusive (default: to the end) in order. Raises
        :class:`Unavailable` when a chunk has no reachable, intact copy."""
        if view.size == 0:
            return
        cs = view.chunk_size
        n = expected_chunks(view.size, cs)
        if len(view) != n:
            raise self._corrupt(view, f"has {len(view)} chunks where {view.size} bytes in {cs}-byte chunks need {n}")
        end = view.size - 1 if end is None else end
        first, last = start // cs, end // cs
        per_piece = max(1, self.piece_size // cs)
        placement = await self.rings.get()
        cacheable = view.size <= self.cache_max_file
        replication = view.info.replication
        window: deque[tuple[int, asyncio.Task]] = deque()
        next_index = first
        try:
            while window or next_index <= last:
                while next_index <= last and len(window) < self.pieces_in_flight:
                    stop = min(last + 1, next_index + per_piece)
                    digests = [view.digest(i) for i in range(next_index, stop)]
                    window.append((next_index, asyncio.create_task(
                        self.fetch(placement, digests, replication, cacheable=cacheable))))
                    next_index = stop
                base, task = window.popleft()
                datas = await task
                for i, data in enumerate(datas, start=base):  # each chunk must be as long as the size says
                    if len(data) != chunk_length(i, view.size, cs):
                        raise self._corrupt(view, f"chunk {i} is {len(data)} bytes, not {chunk_length(i, view.size, cs)}")
                # trim the range's first and last chunk, then send the piece as one block: one ASGI
                # message per piece, not per 1 KB chunk
                if base + len(datas) - 1 == last:  # the end first: the front offsets stay valid
                    datas[-1] = datas[-1][: end - last * cs + 1]
                if base == first:
                    datas[0] = datas[0][start - first * cs :]
                block = b"".join(datas)
                BYTES_OUT.inc(len(block))
                yield block
        finally:
            for _, task in window:
                task.cancel()

    @staticmethod
    def _corrupt(view: Manifest, problem: str) -> Unavailable:
        """A manifest whose chunks do not add up to its size: logged as corrupt, answered 503 (before the
        headers) or an aborted stream, never a short 200."""
        log.error("corrupt manifest: %s version %d %s", view.info.path, view.info.version, problem)
        return Unavailable(f"{view.info.path} version {view.info.version} is corrupt: its manifest {problem}")

    async def fetch(self, placement: Placement, digests: list[bytes], replication: int,
                    cacheable: bool = False) -> list[bytes]:
        """The verified bytes of each of ``digests``, in order. With ``cacheable``, chunks in the chunk
        cache are not fetched and the fetched ones are cached. Raises :class:`Unavailable` for a chunk no
        candidate can serve."""
        if not cacheable:
            return await self.fetch_from_servers(placement, digests, replication)
        out = self.cache.get_many(digests)
        missing = [i for i, data in enumerate(out) if data is None]
        if missing:
            wanted = [digests[i] for i in missing]
            fetched = await self.fetch_from_servers(placement, wanted, replication)
            for i, data in zip(missing, fetched):
                out[i] = data
            self.cache.put_many(wanted, fetched)
        return out  # type: ignore[return-value]

    async def fetch_from_servers(self, placement: Placement, digests: list[bytes], replication: int) -> list[bytes]:
        """Fetch ``digests`` (in order) from the ring, batched per server, with fallback along each
        chunk's read candidates. Raises :class:`Unavailable` for a chunk no candidate can serve."""
        ring = placement.ring
        cands = cover_first([ring.read_candidates(d, replication, EXTRA_READ_CANDIDATES) for d in digests],
                            replication, digests[0] if digests else b"")
        attempt = [0] * len(digests)
        out: list[bytes | None] = [None] * len(digests)
        todo = list(range(len(digests)))
        corrupt: dict[str, list[bytes]] = defaultdict(list)  # server URL -> digests it served corrupt
        try:
            return await self._fetch_rounds(digests, cands, attempt, out, todo, corrupt)
        finally:
            for url, bad in corrupt.items():
                self._read_repair(url, bad)

    async def _fetch_rounds(self, digests: list[bytes], cands: list[list[ServerInfo]], attempt: list[int],
                            out: list[bytes | None], todo: list[int], corrupt: dict[str, list[bytes]]) -> list[bytes]:
        while todo:
            batches: dict[str, list[int]] = defaultdict(list)
            for i in todo:
                if attempt[i] >= len(cands[i]):
                    raise Unavailable(f"chunk {digests[i].hex()} has no reachable intact copy "
                                      f"(tried {len(cands[i])} servers)")
                batches[cands[i][attempt[i]].url].append(i)
            urls = list(batches)
            results = await asyncio.gather(
                *(self.chunks.rpc_read(u, [digests[i] for i in batches[u]]) for u in urls),
                return_exceptions=True)
            todo = []
            for url, result in zip(urls, results):
                idxs = batches[url]
                if isinstance(result, BaseException):
                    if not isinstance(result, Unavailable):
                        log.warning("read from %s failed: %r", url, result)
                    for i in idxs:
                        attempt[i] += 1
                    todo.extend(idxs)
                    continue
                got = {d: data for d, data in iter_frames(result) if data is not None}
                for i in idxs:
                    data = got.get(digests[i])
                    if data is not None and hashlib.sha256(data).digest() == digests[i]:
                        out[i] = bytes(data)
                        if attempt[i]:
                            CHUNK_FALLBACKS.inc()
                    else:
                        if data is not None:
                            log.warning("corrupt copy of %s on %s", digests[i].hex(), url)
                            corrupt[url].append(digests[i])
                            CORRUPT_COPIES.inc()
                        attempt[i] += 1
                        todo.append(i)
        return out  # type: ignore[return-value]

    def _read_repair(self, url: str, digests: list[bytes]) -> None:
        """Fire-and-forget ``POST {url}/chunks/verify`` for chunks ``url`` served corrupt: the server
        re-hashes, quarantines and repairs them (docs/failure-handling.md, "Scrub and read repair")."""
        task = asyncio.create_task(self._rpc_verify_chunks(url, digests))
        self._repairs.add(task)
        task.add_done_callback(self._repairs.discard)

    async def _rpc_verify_chunks(self, url: str, digests: list[bytes]) -> None:
        try:
            await self.chunks.rpc_verify(url, digests)
        except Exception as exc:  # best effort: the scrubber finds the copy later anyway
            log.warning("read repair on %s for %d chunk(s) failed: %r", url, len(digests), exc)

    async def locate(self, placement: Placement, digests: list[bytes], replication: int) -> list[list[str]]:
        """For each digest, the URLs of the candidate servers that hold it committed (asked, not assumed)."""
        ring = placement.ring
        cands = [ring.read_candidates(d, replication, EXTRA_READ_CANDIDATES) for d in digests]
        asks: dict[str, list[int]] = defaultdict(list)
        for i, cs in enumerate(cands):
            for s in cs:
                asks[s.url].append(i)
        urls = list(asks)
        results = await asyncio.gather(*(self.chunks.rpc_exists(u, [digests[i] for i in asks[u]]) for u in urls),
                                       return_exceptions=True)
        holders: list[list[str]] = [[] for _ in digests]
        for url, result in zip(urls, results):
            if isinstance(result, BaseException):
                continue
            for i, presence in zip(asks[url], result):
                if presence == ChunkPresence.COMMITTED:
                    holders[i].append(url)
        return holders


def cover_first(cands: list[list[ServerInfo]], replication: int, salt: bytes) -> list[list[ServerInfo]]:
    """Reorder each chunk's candidates so that first attempts go to as few servers as possible.

    Greedy set cover over each chunk's healthy replicas (the first ``replication`` healthy candidates):
    repeatedly pick the server that holds the most chunks not yet covered and put it first for those
    chunks. A 10 KiB file on a 3-server RF-3 cluster is then one request instead of three. Ties are
    broken by a hash of ``salt`` (the piece's first digest), so different files start on different
    servers and no server becomes the hotspot. Fallback order after the first attempt is unchanged.
    """
    if len(cands) <= 1:
        return cands
    replicas = [[s for s in c if s.state == ServerState.HEALTHY][:replication] for c in cands]
    uncovered = {i for i, r in enumerate(replicas) if r}
    first: dict[int, ServerInfo] = {}
    while uncovered:
        counts: dict[str, int] = defaultdict(int)
        servers: dict[str, ServerInfo] = {}
        for i in uncovered:
            for s in replicas[i]:
                counts[s.server_id] += 1
                servers[s.server_id] = s
        best = max(counts, key=lambda sid: (counts[sid], hashlib.blake2s(salt + sid.encode(), digest_size=4).digest()))
        for i in [i for i in uncovered if servers[best] in replicas[i]]:
            first[i] = servers[best]
            uncovered.discard(i)
    out = []
    for i, c in enumerate(cands):
        chosen = first.get(i)
        out.append(c if chosen is None or c[0] is chosen else [chosen, *[s for s in c if s is not chosen]])
    return out


async def chain_first(first: bytes, rest: AsyncGenerator[bytes, None]) -> AsyncIterator[bytes]:
    """``first`` then the blocks of ``rest``: a response body whose first block was fetched before its
    headers were sent (a file with no reachable copy is then an error answer, not a 200 that breaks off).
    Closing it closes ``rest``, which cancels its read-ahead if the client went away."""
    try:
        yield first
        async for block in rest:
            yield block
    finally:
        await rest.aclose()
