"""Anti-entropy, handoff, re-replication, scrub and GC across real processes (docs/failure-handling.md):
a real leader and real chunk servers, files written through a real user app."""

from __future__ import annotations

import os
import sqlite3
from collections import Counter

import httpx
import pytest

from chunk_server.store.connections import INDEX_FILE
from user_app.client.local_cluster import wait_until
from shared.protocol.frames import ChunkPresence, encode_frames, pack_digests, sha256
from shared.protocol.manifests import decode_manifest
from shared.protocol.models import RingView
from shared.rpc.ring_cache import Placement
from tests.utils.chunk_files import corrupt_chunk, read_chunk
from tests.utils.data import random_bytes
from user_app.client import Client
from tests.utils.auth import http

pytestmark = pytest.mark.timeout(60)

# Jobs run often enough that each test converges in seconds.
REPAIR_ENV = {
    "ANTI_ENTROPY_INTERVAL": "0.3",
    "ANTI_ENTROPY_BATCH": "512",
    "ANTI_ENTROPY_BYTES_PER_SEC": "100000000",
    "RING_REFRESH": "0.2",
    "SCRUB_INTERVAL": "0.5",
    "SCRUB_BYTES_PER_SEC": "100000000",
    "GC_INTERVAL": "3600",
}


def file_digests(cluster, path: str) -> list[bytes]:
    resp = http.get(cluster.leader_url + "/manifest", params={"path": path}, timeout=10)
    assert resp.status_code == 200, resp.text
    return decode_manifest(resp.content).digest_list()


def holders(cluster, digests: list[bytes]) -> dict[bytes, set[str]]:
    """Which live servers (by URL) hold each digest committed."""
    out: dict[bytes, set[str]] = {d: set() for d in digests}
    for svc in cluster.servers:
        if not svc.alive:
            continue
        presence = http.post(svc.url + "/chunks/exists", content=pack_digests(digests), timeout=10).content
        for d, b in zip(digests, presence):
            if b == ChunkPresence.COMMITTED:
                out[d].add(svc.url)
    return out


def placement(cluster):
    p = Placement.from_view(RingView.model_validate(cluster.ring()))
    return p.ring, p.replication_factor


def write_files(cluster, n: int, size: int) -> list[bytes]:
    with Client(cluster.url) as client:
        for i in range(n):
            client.put(f"repair/f{i}.bin", random_bytes(size, seed=i))
    return sorted({d for i in range(n) for d in file_digests(cluster, f"repair/f{i}.bin")})


def test_new_server_gets_its_share_and_misplaced_copies_are_handed_off(make_cluster):
    cluster = make_cluster(chunk_servers=4, env=REPAIR_ENV)
    digests = write_files(cluster, 4, 400 * 1024)  # 1600 chunks, 4800 replicas
    new = cluster.add_chunk_server()
    new_url = new.url

    def converged() -> bool:
        ring, rf = placement(cluster)
        if len(ring) != 5:
            return False
        held = holders(cluster, digests)
        return all(held[d] == {s.url for s in ring.preference_list(d, rf)} for d in digests)

    wait_until(converged, timeout=45, interval=0.5, what="every chunk on exactly its preference list")
    stats = http.get(new_url + "/stats").json()
    share = stats["chunks"] / (3 * len(digests))
    assert 0.2 / 1.5 <= share <= 0.2 * 1.5, share
    dropped = sum(http.get(s.url + "/stats").json()["anti_entropy"]["dropped"] for s in cluster.servers)
    assert dropped >= stats["chunks"] * 0.9  # what moved to the new server left the old ones
    assert stats["anti_entropy"]["pass"] >= 1 and stats["anti_entropy"]["last_pass_completed_at"]


def test_killed_server_chunks_get_back_to_three_copies(make_cluster):
    cluster = make_cluster(chunk_servers=4, env=REPAIR_ENV)
    digests = write_files(cluster, 2, 300 * 1024)
    victim = cluster.servers[1]
    victim.kill()

    def repaired() -> bool:
        ring, rf = placement(cluster)
        if victim.url in {s.url for s in ring.servers.values()}:
            return False  # not removed yet
        held = holders(cluster, digests)
        return all(len(held[d]) >= 3 and {s.url for s in ring.preference_list(d, rf)} <= held[d] for d in digests)

    wait_until(repaired, timeout=50, interval=0.5, what="3 live copies of every chunk")
    with Client(cluster.url) as client:
        assert client.get("repair/f0.bin") == random_bytes(300 * 1024, seed=0)


def test_scrub_quarantines_and_repairs_a_corrupt_chunk(make_cluster):
    cluster = make_cluster(chunk_servers=3, env=REPAIR_ENV)
    digests = write_files(cluster, 1, 20 * 1024)
    victim = cluster.servers[0]
    target = digests[3]
    victim.stop()
    good = read_chunk(victim.env["DATA_DIR"], target)
    assert corrupt_chunk(victim.env["DATA_DIR"], target) == target
    bad = bytes([good[0] ^ 0xFF]) + good[1:]
    victim.start()

    def healed() -> dict | None:
        stats = http.get(victim.url + "/stats").json()
        return stats if stats["quarantined"] >= 1 and stats["repaired"] >= 1 else None

    stats = wait_until(healed, timeout=30, interval=0.3, what="corrupt chunk quarantined and repaired")
    assert stats["corrupt"] >= 1 and stats["scrubbed"] >= len(digests)
    resp = http.get(f"{victim.url}/chunks/{target.hex()}")
    assert resp.status_code == 200 and sha256(resp.content) == target
    with sqlite3.connect(os.path.join(victim.env["DATA_DIR"], INDEX_FILE)) as conn:  # the bad copy is kept for forensics
        assert conn.execute("SELECT data FROM quarantine WHERE digest = ?", (target,)).fetchone()[0] == bad
    conn.close()


def test_verify_endpoint_repairs_at_once(make_cluster):
    cluster = make_cluster(chunk_servers=3, env={**REPAIR_ENV, "SCRUB_INTERVAL": "3600"})
    digests = write_files(cluster, 1, 8 * 1024)
    victim = cluster.servers[2]
    verdict = http.post(victim.url + "/chunks/verify", content=pack_digests(digests)).json()
    assert verdict == {"checked": len(digests), "corrupt": 0, "repaired": 0}


def test_replicate_endpoint_checks_hashes(make_cluster):
    cluster = make_cluster(chunk_servers=1, replication=1, env=REPAIR_ENV)
    url = cluster.servers[0].url
    good = random_bytes(1024, seed=1)
    resp = http.post(url + "/chunks/replicate", content=encode_frames([(sha256(good), good), (b"\1" * 32, good)]))
    assert resp.status_code == 422
    assert http.post(url + "/chunks/exists", content=sha256(good)).content == bytes([ChunkPresence.ABSENT])
    resp = http.post(url + "/chunks/replicate", content=encode_frames([(sha256(good), good)]))
    assert resp.json() == {"stored": 1}
    assert http.post(url + "/chunks/exists", content=sha256(good)).content == bytes([ChunkPresence.COMMITTED])


def test_gc_deletes_unreferenced_chunks_only(make_cluster):
    cluster = make_cluster(chunk_servers=3, env={**REPAIR_ENV, "GC_INTERVAL": "0.5", "GC_GRACE": "0"})
    digests = write_files(cluster, 1, 10 * 1024)
    url = cluster.servers[0].url
    orphans = [random_bytes(1024, seed=100 + i) for i in range(20)]  # committed, but no version names them
    http.post(url + "/chunks/prepare", params={"txn_id": "orphan"},
               content=encode_frames([(sha256(o), o) for o in orphans])).raise_for_status()
    http.post(url + "/chunks/commit", json={"txn_ids": ["orphan"]}).raise_for_status()

    def collected() -> dict | None:
        stats = http.get(url + "/stats").json()
        return stats if stats["gc_deleted"] >= len(orphans) else None

    stats = wait_until(collected, timeout=30, interval=0.3, what="orphan chunks collected")
    assert stats["gc_bytes"] >= 20 * 1024
    # Anti-entropy may have copied orphans to their preference lists before the first GC round; those
    # servers' GC collects them too.
    orphan_digests = [sha256(o) for o in orphans]
    wait_until(lambda: not any(holders(cluster, orphan_digests).values()), timeout=30, interval=0.3,
               what="orphans gone from every server")
    held = holders(cluster, digests)
    assert Counter(len(v) for v in held.values()) == Counter({3: len(digests)})  # referenced chunks all stay
