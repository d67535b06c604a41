"""Consistent-hash ring: virtual nodes, binary search, preference lists.

Pure placement logic with no I/O, after Dynamo §4.2 (partitioning with virtual nodes) and §4.3
(the preference list) and the reference design (`003`: "User identifies the appropriate chunk servers
using a hash ring and binary search").

Positions are signed 64-bit integers so that they fit a SQL ``BIGINT``. A server's virtual nodes sit at
``mmh3.hash64(f"{server_id}#{i}")``; a chunk sits at the first 8 bytes of its SHA-256 digest, which is
already uniformly distributed, so no second hash is needed.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Iterable, Iterator

import mmh3

if TYPE_CHECKING:
    from shared.protocol.models import RingView

# 64 virtual nodes per server keep the load of 5 servers within about ±15 % of the mean
# (tests/test_ring.py measures it on 100k chunks); more nodes smooth further but grow the ring payload.
DEFAULT_VIRTUAL_NODES = 64
# Servers tried beyond a chunk's replicas when reading or looking for copies: the reference design's
# "attempts to read from the next 3 servers on the hash ring if failed to read from closest". Reads, fsck
# and scrub repair all look this far, so a copy handed off along the ring is found wherever it is needed.
EXTRA_READ_CANDIDATES = 3


class ServerState(StrEnum):
    """Health of a chunk server as the leader sees it (reference design: 1-4 misses unhealthy, 5 removed)."""

    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    REMOVED = "removed"


def virtual_node_positions(server_id: str, count: int = DEFAULT_VIRTUAL_NODES) -> list[int]:
    """Ring positions of a server's ``count`` virtual nodes: ``mmh3.hash64(f"{server_id}#{i}")[0]``."""
    return [mmh3.hash64(f"{server_id}#{i}", signed=True)[0] for i in range(count)]


def chunk_position(digest: bytes) -> int:
    """Ring position of a chunk: its 32-byte SHA-256 digest's first 8 bytes as a signed big-endian int."""
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """A ring member: stable id, the URL peers reach it at, its health state, and when it last joined the
    ring (UNIX seconds; None for members older than that record)."""

    server_id: str
    url: str
    state: ServerState = ServerState.HEALTHY
    joined_at: float | None = None


@dataclass
class Ring:
    """An immutable snapshot of the ring at one ``epoch``.

    ``servers`` maps server id to :class:`ServerInfo`; ``vnodes`` is a list of ``(position, server_id)``.
    Removed servers must not be passed in: they are not ring members.
    """

    epoch: int
    servers: dict[str, ServerInfo]
    vnodes: list[tuple[int, str]]
    _positions: list[int] = field(init=False, repr=False)
    _owners: list[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        ordered = sorted(v for v in self.vnodes if v[1] in self.servers)
        self._positions = [p for p, _ in ordered]
        self._owners = [s for _, s in ordered]

    @classmethod
    def build(cls, epoch: int, servers: Iterable[ServerInfo], vnodes_per_server: int = DEFAULT_VIRTUAL_NODES) -> "Ring":
        """Build a ring whose virtual nodes are derived from the server ids."""
        members = {s.server_id: s for s in servers if s.state != ServerState.REMOVED}
        vnodes = [(p, sid) for sid in members for p in virtual_node_positions(sid, vnodes_per_server)]
        return cls(epoch=epoch, servers=members, vnodes=vnodes)

    @classmethod
    def from_view(cls, view: "RingView") -> "Ring":
        """The ring of the leader's ``GET /ring`` (a :class:`shared.protocol.models.RingView`); removed
        servers are listed there but are not members."""
        servers = {s.server_id: ServerInfo(s.server_id, s.url, ServerState(s.state), s.joined_at)
                   for s in view.servers if s.state != ServerState.REMOVED}
        return cls(epoch=view.epoch, servers=servers, vnodes=[(int(p), sid) for p, sid in view.vnodes])

    def __len__(self) -> int:
        return len(self.servers)

    def walk_ring(self, position: int) -> Iterator[ServerInfo]:
        """Distinct servers clockwise from ``position``: binary search for the first virtual node at or
        after it, wrapping around past the largest position (Dynamo §4.3)."""
        n = len(self._positions)
        if n == 0:
            return
        start = bisect.bisect_left(self._positions, position)
        seen: set[str] = set()
        for k in range(n):
            sid = self._owners[(start + k) % n]
            if sid not in seen:
                seen.add(sid)
                yield self.servers[sid]
                if len(seen) == len(self.servers):
                    return

    def owners(self, digest: bytes, replication_factor: int) -> list[ServerInfo]:
        """owners(d): the first ``replication_factor`` distinct members clockwise from the chunk's position,
        whatever their health (docs/failure-handling.md): where the chunk belongs when every server is up."""
        out: list[ServerInfo] = []
        for server in self.walk_ring(chunk_position(digest)):
            out.append(server)
            if len(out) == replication_factor:
                break
        return out

    def preference_list(self, digest: bytes, replication_factor: int) -> list[ServerInfo]:
        """Where a new chunk is written: the first ``replication_factor`` distinct *healthy* servers
        clockwise from the chunk's position. Shorter than ``replication_factor`` only when the ring has
        fewer healthy servers; unhealthy servers get no new writes."""
        out: list[ServerInfo] = []
        for server in self.walk_ring(chunk_position(digest)):
            if server.state == ServerState.HEALTHY:
                out.append(server)
                if len(out) == replication_factor:
                    break
        return out

    def read_candidates(self, digest: bytes, replication_factor: int, extra: int = EXTRA_READ_CANDIDATES) -> list[ServerInfo]:
        """Where to look for a chunk, best first: the first ``replication_factor + extra`` distinct
        servers clockwise (the replicas, then the next ``extra`` in case the chunk was handed off), with
        healthy servers before unhealthy ones (unhealthy are tried last)."""
        walked = list(self.walk_ring(chunk_position(digest)))[: replication_factor + extra]
        return [s for s in walked if s.state == ServerState.HEALTHY] + [
            s for s in walked if s.state != ServerState.HEALTHY
        ]


RING_SPACE = 1 << 64  # positions are signed 64-bit integers


def ring_shares(vnodes: Iterable[tuple[int, str]]) -> dict[str, float]:
    """The fraction of the hash space (0..1) each server is the first owner of: a virtual node owns the
    arc from the previous node's position (exclusive) to its own (inclusive), as :meth:`Ring.walk_ring`
    places keys. ``vnodes``: ``(position, server_id)`` pairs in any order; ``{}`` for an empty ring."""
    nodes = sorted(vnodes)
    shares: dict[str, float] = {}
    for i, (position, sid) in enumerate(nodes):
        previous = nodes[i - 1][0]  # i = 0: the largest position, across the wrap
        arc = (position - previous) % RING_SPACE or (RING_SPACE if len(nodes) == 1 else 0)
        shares[sid] = shares.get(sid, 0.0) + arc / RING_SPACE
    return shares
