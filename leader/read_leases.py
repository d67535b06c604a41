"""Read leases: which user apps may answer ``path -> latest version`` from their own cache, and until when.

The idea is GFS §2.7's client metadata cache made safe by Chubby's cache leases (Burrows, OSDI 2006,
§2.5): a user app that asks ``GET /manifest`` for the latest version of a path names itself
(``X-RingFS-Lease-Holder: <holder id> <callback URL>``) and gets ``X-RingFS-Lease: <seconds>`` back. For
that many seconds, counted from *before* it sent the request, it may answer reads of the path from its
cache (``user_app/manifest_leases.py``). Before a mutation that changes what the path's latest lookup
returns (commit of a new version, delete, delete of a version, undelete, rename) becomes visible, the
leader **revokes** every unexpired lease on the path: ``POST <callback>/internal/leases/revoke`` to each
holder, and for a holder that does not confirm within ``REVOKE_TIMEOUT`` seconds (killed, paused, cut
off, or another process at that address now) it waits until that holder's lease has expired. So no
acknowledged mutation is followed by a stale cached read anywhere.

Three races are closed:

* A lookup that overlaps a mutation: the lease is recorded *before* the lookup's SQL runs, and refused
  while the path's mutation is in flight (``ManifestCache.is_busy``, set before the revocation). So a
  lease is either seen by the mutation's revocation or granted after the mutation ended.
* A revocation that overtakes the lookup's answer at the user app: the user app keeps no answer whose
  request was sent before a revocation it received (its own generation counter).
* A restarted leader, or a standby that became active, does not know the leases granted before. Leases
  are kept in memory (granting one costs no SQL), but no lease is granted past the **lease horizon**, a
  time (UNIX seconds) kept in ``leader_state.lease_horizon`` and moved ``HORIZON_AHEAD`` seconds ahead,
  by one write, whenever grants come within ``HORIZON_RENEW`` seconds of it. A leader that becomes active
  (:meth:`ReadLeases.load`) makes its mutations wait until that horizon, or at most ``lease_seconds``,
  like NFSv4's grace period; when no lease was granted lately the horizon is past and nothing waits.
  Until the horizon is written a lookup gets no lease (one lookup after a start, or a minute of grants).

Timing: the leader counts a lease from when it recorded it, the user app from before it sent the
request, both on monotonic clocks; the holder's lease therefore always ends first.

``lease_seconds`` 0 (``LEASE_SECONDS=0``) grants none; revocation then has nothing to do. The horizon is
wall-clock time, so leaders' clocks must agree to within ``HORIZON_AHEAD - lease_seconds`` (NTP does).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Awaitable, Callable, Iterable

import orjson
from prometheus_client import Counter

from shared.errors import RingFSError
from shared.metrics import gauge
from shared.protocol.rules import LEASE_CALLBACK_RE, LEASE_HOLDER_HEADER as HOLDER_HEADER, LEASE_REVOKE_PATH as REVOKE_PATH
from shared.rpc.transport import Transport

log = logging.getLogger("ringfs.leader.leases")

# Seconds a holder has to confirm a revocation before the leader waits its lease out instead.
REVOKE_TIMEOUT = 1.0
# Leases kept at most; past it, grants are refused until old ones expire (a bound on leader memory:
# about 200 bytes each).
MAX_LEASES = 1_000_000
# Seconds the stored lease horizon is moved ahead of now, and how close grants may come to it before
# it is moved again: one small write a minute at most while leases are granted.
HORIZON_AHEAD = 60.0
HORIZON_RENEW = 30.0
_HOLDER_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")

GRANTED = Counter("ringfs_read_leases_granted_total", "Read leases granted to user apps")
REVOKED = Counter("ringfs_read_lease_revocations_total",
                  "Revocations of read leases by outcome: confirmed by the holder, or waited out",
                  ("outcome",))
HELD = gauge("ringfs_read_leases", "Read leases recorded (expired ones are dropped lazily)")


class BadHolder(ValueError):
    """An ``X-RingFS-Lease-Holder`` header that is not ``<holder id> <http(s) URL>``."""


def parse_holder(value: str) -> tuple[str, str]:
    """``(holder id, callback URL)`` of an ``X-RingFS-Lease-Holder`` header value. Raises :class:`BadHolder`."""
    holder, _, url = value.strip().partition(" ")
    url = url.strip().rstrip("/")
    if not _HOLDER_ID.match(holder):
        raise BadHolder(f"{HOLDER_HEADER} must start with a holder id of 8-64 URL-safe characters")
    if not LEASE_CALLBACK_RE.match(url):
        raise BadHolder(f"{HOLDER_HEADER} must end with the holder's http(s)://host:port[/prefix], got {url[:80]!r}")
    return holder, url


@dataclass(slots=True)
class Lease:
    url: str  # where the holder takes revocations
    expires: float  # monotonic seconds


class ReadLeases:
    """The leases this leader granted, ``(path, holder id) -> Lease``, in grant order (all last equally
    long, so the oldest expire first and are dropped from the front)."""

    def __init__(self, lease_seconds: float, transport: Transport | None = None,
                 is_busy: Callable[[str], bool] = lambda path: False,
                 load_horizon: Callable[[], Awaitable[float | None]] | None = None,
                 save_horizon: Callable[[float], Awaitable[None]] | None = None,
                 clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time) -> None:
        self.lease_seconds = lease_seconds if transport is not None and save_horizon is not None else 0.0
        self.transport = transport
        self.is_busy = is_busy  # whether a mutation of the path is in flight (no lease may start then)
        self.load_horizon, self.save_horizon = load_horizon, save_horizon
        self.clock, self.wall_clock = clock, wall_clock
        self._leases: OrderedDict[tuple[str, str], Lease] = OrderedDict()
        self._by_path: dict[str, set[str]] = {}
        self._grace_until = clock() + self.lease_seconds  # until load() has read the stored horizon
        self._horizon = 0.0  # UNIX seconds: the stored lease horizon, as this leader last wrote or read it
        self._saving: asyncio.Task | None = None

    def __len__(self) -> int:
        return len(self._leases)

    async def load(self) -> None:
        """This leader just became active: leases a previous one granted may run until the stored horizon,
        and for ``lease_seconds`` at most; mutations wait until then (see the module docstring). Raises
        :class:`Unavailable` when the horizon cannot be read (the full wait then stays)."""
        if not self.lease_seconds:
            return
        started = self.clock()
        self._grace_until = started + self.lease_seconds
        stored = await self.load_horizon() or 0.0
        self._horizon = stored
        self._grace_until = started + max(0.0, min(self.lease_seconds, stored - self.wall_clock()))

    def grant(self, path: str, holder: str, url: str) -> float:
        """Record a lease on ``path`` for ``holder`` (reachable at ``url``) *before* the lookup runs; the
        lease's length in seconds, or 0 when none is granted (leases off, the path being written, or
        the table full). A lookup that then fails leaves the record: forgetting it could forget an
        earlier lease of the same holder on the path, which it may still use; a needless revocation
        costs one call."""
        if not self.lease_seconds or self.is_busy(path):
            return 0.0
        wall = self.wall_clock()
        if self._horizon - wall < HORIZON_RENEW:
            self._move_horizon(wall + HORIZON_AHEAD)
        if self._horizon < wall + self.lease_seconds:
            return 0.0  # no lease until the horizon past it is stored
        now = self.clock()
        self._expire(now)
        if len(self._leases) >= MAX_LEASES:
            return 0.0
        key = (path, holder)
        self._leases.pop(key, None)
        self._leases[key] = Lease(url, now + self.lease_seconds)
        self._by_path.setdefault(path, set()).add(holder)
        GRANTED.inc()
        HELD.set(len(self._leases))
        return self.lease_seconds

    def _move_horizon(self, horizon: float) -> None:
        """Store ``horizon`` in the background (one write at a time); grants use it once it is stored."""
        if self._saving is not None and not self._saving.done():
            return

        async def save() -> None:
            try:
                await self.save_horizon(horizon)
            except RingFSError as exc:  # the database is down, or this leader's term ended: no leases
                log.info("lease horizon not stored (%s): granting no read lease", exc.message)
                return
            self._horizon = max(self._horizon, horizon)

        self._saving = asyncio.get_running_loop().create_task(save())

    def _forget(self, key: tuple[str, str]) -> None:
        if self._leases.pop(key, None) is None:
            return
        holders = self._by_path.get(key[0])
        if holders is not None:
            holders.discard(key[1])
            if not holders:
                del self._by_path[key[0]]

    def _expire(self, now: float) -> None:
        while self._leases:
            key, lease = next(iter(self._leases.items()))
            if lease.expires > now:
                break
            self._forget(key)

    async def revoke(self, paths: Iterable[str]) -> None:
        """End every unexpired lease on ``paths``: call after the paths are marked busy (no new lease can
        start) and before the mutation's SQL transaction begins (a transaction must not wait on a user
        app: PostgreSQL ends one idle for ``IDLE_TRANSACTION_TIMEOUT``, and its locks would be held).
        Returns once each holder confirmed or its lease ran out; never raises for a holder's failure."""
        await self._wait_grace()
        if not self._leases:
            return
        now = self.clock()
        self._expire(now)
        per_holder: dict[str, tuple[str, list[str], float]] = {}
        for path in paths:
            for holder in list(self._by_path.get(path, ())):
                lease = self._leases[(path, holder)]
                url, listed, expires = per_holder.get(holder, (lease.url, [], 0.0))
                listed.append(path)
                per_holder[holder] = (lease.url, listed, max(expires, lease.expires))
        if per_holder:
            await asyncio.gather(*(self._revoke_at(holder, url, listed, expires)
                                   for holder, (url, listed, expires) in per_holder.items()))

    async def revoke_all(self) -> None:
        """End every unexpired lease on every path (a rename moves paths not known in advance)."""
        await self._wait_grace()
        if not self._leases:
            return
        self._expire(self.clock())
        per_holder: dict[str, tuple[str, float]] = {}
        for (_, holder), lease in self._leases.items():
            url, expires = per_holder.get(holder, (lease.url, 0.0))
            per_holder[holder] = (lease.url, max(expires, lease.expires))
        await asyncio.gather(*(self._revoke_at(holder, url, None, expires)
                               for holder, (url, expires) in per_holder.items()))

    async def _wait_grace(self) -> None:
        wait = self._grace_until - self.clock()
        if wait > 0:
            log.info("waiting %.1f s for read leases a previous leader may have granted", wait)
            await asyncio.sleep(wait)

    async def _revoke_at(self, holder: str, url: str, paths: list[str] | None, expires: float) -> None:
        """One holder's revocation: confirmed, or its lease waited out until ``expires``."""
        body = orjson.dumps({"holder": holder, "paths": paths})
        try:
            await self.transport.call("POST", url + REVOKE_PATH, peer=f"user app at {url}", body=body,
                                      content_type="application/json", timeout=REVOKE_TIMEOUT)
            REVOKED.labels("confirmed").inc()
        except RingFSError as exc:
            wait = expires - self.clock()
            log.info("lease holder %s at %s did not confirm a revocation (%s): waiting %.1f s for its lease",
                     holder, url, exc.message, max(0.0, wait))
            REVOKED.labels("waited").inc()
            if wait > 0:
                await asyncio.sleep(wait)
        if paths is None:
            keys = [k for k in self._leases if k[1] == holder]
        else:
            keys = [(p, holder) for p in paths]
        for key in keys:
            lease = self._leases.get(key)
            if lease is not None and lease.expires <= expires:  # not one granted anew meanwhile
                self._forget(key)
        HELD.set(len(self._leases))
