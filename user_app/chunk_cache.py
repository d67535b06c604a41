"""The user app's cache of verified chunks, by SHA-256 digest (issue 3, "Reads": chunks are immutable, so a
user app may cache them by hash).

A chunk's id is the hash of its bytes, so a cached chunk is never stale and needs no invalidation: a new
version of a file has new digests, which the leader's manifest (always fetched) names. Only chunks that
passed the hash check are cached. The cache is an LRU bounded in bytes (cachetools); only chunks of files
up to ``CHUNK_CACHE_MAX_FILE`` bytes are admitted, so streaming one large file does not evict the hot
documents many people read. Each uvicorn worker has its own cache.
"""

from __future__ import annotations

from cachetools import LRUCache

from user_app.metrics import CHUNK_CACHE_BYTES, CHUNK_CACHE_LOOKUPS


class ChunkCache:
    """Verified chunk bytes by 32-byte digest, at most ``max_bytes`` bytes of chunk data (0 disables it)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._lru: LRUCache | None = LRUCache(maxsize=max_bytes, getsizeof=len) if max_bytes > 0 else None

    def get_many(self, digests: list[bytes]) -> list[bytes | None]:
        """The cached bytes of each digest, in order, ``None`` where not cached."""
        if self._lru is None:
            return [None] * len(digests)
        found = [self._lru.get(d) for d in digests]
        hits = sum(f is not None for f in found)
        CHUNK_CACHE_LOOKUPS.labels("hit").inc(hits)
        CHUNK_CACHE_LOOKUPS.labels("miss").inc(len(digests) - hits)
        return found

    def put_many(self, digests: list[bytes], datas: list[bytes]) -> None:
        """Cache verified chunks (``datas[i]`` is the chunk whose SHA-256 is ``digests[i]``)."""
        if self._lru is None:
            return
        for d, data in zip(digests, datas):
            if len(data) <= self.max_bytes:
                self._lru[d] = data
        CHUNK_CACHE_BYTES.set(self._lru.currsize)
