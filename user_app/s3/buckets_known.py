"""Which buckets exist, remembered briefly: a PutObject or GetObject of a missing key must say
``NoSuchBucket`` when the bucket is missing, and asking the leader on every write would cost a call.

A bucket seen to exist is trusted for ``ttl`` seconds (default 5, as access keys are); a missing one is
never cached, so a bucket made on another user app is usable at once. A bucket deleted elsewhere can still
take writes here for up to ``ttl`` seconds; they land in its folder, which then exists again, exactly as a
``ringfs put`` into it would make it.
"""

from __future__ import annotations

import time

from shared.errors import NotFound
from shared.rpc.leader_client import LeaderClient
from user_app.s3.errors import no_such_bucket
from user_app.s3.names import bucket_folder

MAX_REMEMBERED = 10_000


class KnownBuckets:
    def __init__(self, ttl: float = 5.0) -> None:
        self.ttl = ttl
        self._until: dict[str, float] = {}

    async def require(self, leader: LeaderClient, bucket: str) -> None:
        """Raise ``NoSuchBucket`` (404) unless folder ``bucket`` exists on the leader, explicit or
        implied by files; :class:`Unavailable` when the leader cannot be asked."""
        folder = bucket_folder(bucket)
        if self._until.get(folder, 0.0) > time.monotonic():
            return
        try:
            await leader.rpc_folder(folder)
        except NotFound:
            self._until.pop(folder, None)
            raise no_such_bucket(bucket) from None
        self.seen(folder)

    def seen(self, folder: str) -> None:
        if len(self._until) >= MAX_REMEMBERED:
            self._until.pop(next(iter(self._until)))
        self._until[folder] = time.monotonic() + self.ttl

    def forget(self, folder: str) -> None:
        self._until.pop(folder, None)
