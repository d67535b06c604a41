"""The reader's choice of first replicas: as few servers as possible, spread across files."""

from __future__ import annotations

import hashlib

from shared.ring import Ring, ServerInfo, ServerState
from shared.ring import EXTRA_READ_CANDIDATES
from user_app.reader import cover_first


def digests(n: int, seed: int = 0) -> list[bytes]:
    return [hashlib.sha256(f"{seed}-{i}".encode()).digest() for i in range(n)]


def candidates(ring: Ring, ds: list[bytes], rf: int):
    return [ring.read_candidates(d, rf, EXTRA_READ_CANDIDATES) for d in ds]


def test_one_server_covers_a_file_when_every_server_holds_every_chunk():
    ring = Ring.build(1, [ServerInfo(f"s{i}", f"http://s{i}") for i in range(3)])
    ds = digests(10)
    ordered = cover_first(candidates(ring, ds, 3), 3, ds[0])
    assert len({c[0].server_id for c in ordered}) == 1


def test_first_choice_is_always_a_healthy_replica_and_fallbacks_are_kept():
    ring = Ring.build(1, [ServerInfo(f"s{i}", f"http://s{i}") for i in range(6)])
    ds = digests(200)
    cands = candidates(ring, ds, 3)
    ordered = cover_first(cands, 3, ds[0])
    for before, after in zip(cands, ordered):
        assert after[0] in before[:3]
        assert sorted(s.server_id for s in after) == sorted(s.server_id for s in before)
    assert len({c[0].server_id for c in ordered}) <= len({c[0].server_id for c in cands})


def test_unhealthy_servers_are_never_chosen_first():
    servers = [ServerInfo("s0", "u0", ServerState.UNHEALTHY), ServerInfo("s1", "u1"), ServerInfo("s2", "u2"),
               ServerInfo("s3", "u3")]
    ring = Ring.build(1, servers)
    ds = digests(50)
    ordered = cover_first(candidates(ring, ds, 3), 3, ds[0])
    assert all(c[0].state == ServerState.HEALTHY for c in ordered)


def test_different_files_start_on_different_servers():
    ring = Ring.build(1, [ServerInfo(f"s{i}", f"http://s{i}") for i in range(3)])
    firsts = set()
    for seed in range(30):
        ds = digests(10, seed)
        firsts.add(cover_first(candidates(ring, ds, 3), 3, ds[0])[0][0].server_id)
    assert len(firsts) == 3
