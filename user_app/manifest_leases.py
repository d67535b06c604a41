"""The user app's side of read leases: ``path -> latest committed version`` answered from memory while
the leader's lease on it runs (GFS §2.7's client metadata cache; Chubby's cache leases, OSDI 2006 §2.5).
The leader's side, and why no read is ever stale, is in ``leader/read_leases.py``.

* A cache miss asks ``GET /manifest`` with ``X-RingFS-Lease-Holder: <holder id> <ADVERTISE_URL>``; the
  answer is kept only when it grants a lease (``X-RingFS-Lease: <seconds>``) and no revocation arrived
  while it was on its way. The lease ends ``seconds`` after the moment *before* the request was sent.
* After that, the entry is not used: a user app that lost contact with the leader serves nothing from
  this cache once its leases ended.
* ``POST /internal/leases/revoke`` (cluster credential only) drops entries at the leader's request,
  before the leader commits a change; the holder id names this process, so a restarted user app at the
  same address refuses (409) and the leader waits the old lease out instead.

Bounded by the digests it holds (``MAX_DIGEST_BYTES``); a file with more than ``MAX_CHUNKS`` chunks is
never kept (its manifest costs more than a lookup saves). Off with ``READ_LEASES=false``, and with
``WORKERS`` > 1 (a revocation would reach one worker of several).
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from typing import Callable

from prometheus_client import Counter

from shared.paths import normalize_path
from shared.protocol.manifests import Manifest
from shared.rpc.leader_client import LeaderClient

# Bytes of chunk digests (32 per chunk) kept at most: 16 MiB is half a million chunks.
MAX_DIGEST_BYTES = 16 * 1024 * 1024
MAX_CHUNKS = 4096

LOOKUPS = Counter("ringfs_leased_manifest_lookups_total",
                  "Latest-version lookups by outcome: hit (answered under a lease), miss (asked the leader)",
                  ("outcome",))
REVOCATIONS = Counter("ringfs_lease_revocations_received_total", "Revocations received from the leader")


class LeasedManifests:
    """``path -> (Manifest, lease end)``, LRU by digest bytes. ``holder_id`` is random per process."""

    def __init__(self, leader: LeaderClient, callback_url: str, max_digest_bytes: int = MAX_DIGEST_BYTES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.leader = leader
        self.holder_id = secrets.token_urlsafe(16)
        self.holder_header = f"{self.holder_id} {callback_url.rstrip('/')}"
        self.max_digest_bytes = max_digest_bytes
        self.clock = clock
        self._entries: OrderedDict[str, tuple[Manifest, float]] = OrderedDict()
        self._bytes = 0
        self._generation = 0  # bumped by every revocation: answers sent for before one are not kept

    def __len__(self) -> int:
        return len(self._entries)

    async def latest(self, path: str) -> Manifest:
        """The latest committed version of ``path`` (normalized): from the cache while its lease runs,
        else from the leader. Raises :class:`BadRequest` for a path the leader would refuse, and what
        :meth:`LeaderClient.rpc_manifest` raises (404, 503)."""
        path = normalize_path(path)  # the leader's spelling: what its revocations name
        entry = self._entries.get(path)
        now = self.clock()
        if entry is not None:
            if now < entry[1]:
                self._entries.move_to_end(path)
                LOOKUPS.labels("hit").inc()
                return entry[0]
            self._pop(path)
        LOOKUPS.labels("miss").inc()
        generation = self._generation
        view, seconds = await self.leader.rpc_manifest_leased(path, self.holder_header)
        if seconds > 0 and generation == self._generation and len(view) <= MAX_CHUNKS:
            self._put(path, view, now + seconds)
        return view

    def revoke(self, holder: str, paths: list[str] | None) -> bool:
        """The leader's revocation of ``paths`` (None: every path) for ``holder``; False when ``holder`` is
        not this process (nothing is dropped: the leader then waits the lease out)."""
        if not secrets.compare_digest(holder.encode(), self.holder_id.encode()):
            return False
        REVOCATIONS.inc()
        self._generation += 1
        if paths is None:
            self._entries.clear()
            self._bytes = 0
        else:
            for path in paths:
                self._pop(path)
        return True

    def _put(self, path: str, view: Manifest, expires: float) -> None:
        self._pop(path)
        self._entries[path] = (view, expires)
        self._bytes += 32 * len(view)
        while self._bytes > self.max_digest_bytes and self._entries:
            self._pop(next(iter(self._entries)))

    def _pop(self, path: str) -> None:
        entry = self._entries.pop(path, None)
        if entry is not None:
            self._bytes -= 32 * len(entry[0])
