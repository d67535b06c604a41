"""Verified access keys, cached briefly so that a read does not cost the leader an extra call.

A key found on the leader (``GET /keys/{id}``, with its secret) is kept for ``KEY_CACHE_TTL`` seconds
(default 5), an unknown id for as long, so a flood of made-up ids costs the leader one call per id per TTL.
A key deleted through this user app is dropped at once; on other user apps a deleted key keeps working
for at most ``KEY_CACHE_TTL`` seconds (README "Security").
"""

from __future__ import annotations

import asyncio
import re
import time

from shared.errors import NotFound
from shared.protocol.models import ACCESS_KEY_PATTERN, AccessKeySecret
from shared.rpc.leader_client import LeaderClient

_ACCESS_KEY_RE = re.compile(ACCESS_KEY_PATTERN)
# Keys remembered at most (each a few hundred bytes); the least recently fetched go first.
MAX_CACHED_KEYS = 10_000


class KeyCache:
    """``await lookup(access_key)`` → the key with its secret, or None when there is no such key."""

    def __init__(self, leader: LeaderClient, ttl: float) -> None:
        self.leader = leader
        self.ttl = ttl
        self._entries: dict[str, tuple[float, AccessKeySecret | None]] = {}
        self._inflight: dict[str, asyncio.Future] = {}

    async def lookup(self, access_key: str) -> AccessKeySecret | None:
        """Raises :class:`Unavailable` when the leader cannot be asked (the caller answers 503)."""
        if not _ACCESS_KEY_RE.match(access_key):
            return None
        hit = self._entries.get(access_key)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        pending = self._inflight.get(access_key)
        if pending is not None:  # one leader call per key, however many requests wait for it
            return await asyncio.shield(pending)
        future = asyncio.get_running_loop().create_future()
        self._inflight[access_key] = future
        try:
            try:
                key: AccessKeySecret | None = await self.leader.rpc_key(access_key)
            except NotFound:
                key = None
            if len(self._entries) >= MAX_CACHED_KEYS:
                self._entries.pop(next(iter(self._entries)))
            self._entries[access_key] = (time.monotonic() + self.ttl, key)
            future.set_result(key)
            return key
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: a waiter may not exist
            raise
        finally:
            del self._inflight[access_key]

    def forget(self, access_key: str) -> None:
        """Drop a key at once (it was deleted or changed through this user app)."""
        self._entries.pop(access_key, None)
