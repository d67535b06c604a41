"""Placement: binary search, wrap-around, distinct replicas, balance with virtual nodes."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from shared.ring import Ring, ServerInfo, ServerState, chunk_position, virtual_node_positions


def digest_at(position: int) -> bytes:
    """A fake 32-byte digest whose ring position is exactly ``position``."""
    return position.to_bytes(8, "big", signed=True) + b"\0" * 24


def small_ring() -> Ring:
    servers = {s: ServerInfo(s, f"http://{s}") for s in "abc"}
    vnodes = [(-100, "a"), (0, "b"), (100, "c"), (200, "a")]
    return Ring(epoch=1, servers=servers, vnodes=vnodes)


def test_binary_search_picks_first_vnode_at_or_after_position():
    ring = small_ring()
    assert [s.server_id for s in ring.preference_list(digest_at(-100), 1)] == ["a"]
    assert [s.server_id for s in ring.preference_list(digest_at(-99), 1)] == ["b"]
    assert [s.server_id for s in ring.preference_list(digest_at(1), 1)] == ["c"]
    assert [s.server_id for s in ring.preference_list(digest_at(150), 1)] == ["a"]


def test_wraps_around_past_the_largest_position():
    ring = small_ring()
    assert [s.server_id for s in ring.preference_list(digest_at(201), 3)] == ["a", "b", "c"]
    assert [s.server_id for s in ring.preference_list(digest_at(2**63 - 1), 2)] == ["a", "b"]


def test_replicas_are_distinct_servers_and_skip_duplicate_vnodes():
    ring = small_ring()
    # from 101: vnode 200 is "a", then wrap to -100 "a" again (skipped), then "b", "c"
    assert [s.server_id for s in ring.preference_list(digest_at(101), 3)] == ["a", "b", "c"]


def test_unhealthy_servers_get_no_writes_but_are_read_last():
    servers = {"a": ServerInfo("a", "u"), "b": ServerInfo("b", "u", ServerState.UNHEALTHY), "c": ServerInfo("c", "u")}
    ring = Ring(1, servers, [(-100, "a"), (0, "b"), (100, "c")])
    assert [s.server_id for s in ring.preference_list(digest_at(-50), 3)] == ["c", "a"]
    assert [s.server_id for s in ring.read_candidates(digest_at(-50), 3)] == ["c", "a", "b"]


def test_preference_list_is_short_when_too_few_servers():
    ring = small_ring()
    assert len(ring.preference_list(digest_at(0), 5)) == 3


def test_empty_ring_places_nothing():
    assert Ring(0, {}, []).preference_list(digest_at(0), 3) == []


def test_virtual_node_positions_are_stable_and_distinct():
    assert virtual_node_positions("cs-1", 64) == virtual_node_positions("cs-1", 64)
    assert len(set(virtual_node_positions("cs-1", 64))) == 64
    assert set(virtual_node_positions("cs-1", 64)).isdisjoint(virtual_node_positions("cs-2", 64))


def test_chunk_position_is_signed_prefix_of_digest():
    d = hashlib.sha256(b"x").digest()
    assert chunk_position(d) == int.from_bytes(d[:8], "big", signed=True)


@pytest.mark.parametrize("vnodes", [64])
def test_load_is_balanced_within_15_percent_on_5_servers(vnodes):
    ring = Ring.build(1, [ServerInfo(f"cs-{i}", f"http://s{i}") for i in range(5)], vnodes)
    load = Counter()
    for i in range(100_000):
        d = hashlib.sha256(i.to_bytes(8, "big")).digest()
        for s in ring.preference_list(d, 1):
            load[s.server_id] += 1
    mean = 100_000 / 5
    assert len(load) == 5
    assert all(abs(n - mean) / mean <= 0.15 for n in load.values()), load
