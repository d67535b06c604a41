"""Compaction in a running chunk server (docs/chunk-store.md): GC kills records, the compaction job gives
their segments back, and a ``kill -9`` while it runs loses no chunk. Real processes on loopback."""

from __future__ import annotations

import pytest

from shared.protocol.frames import encode_frames, sha256
from shared.protocol.manifests import decode_manifest
from tests.utils.auth import http
from tests.utils.data import random_bytes
from user_app.client import Client
from user_app.client.local_cluster import wait_until

pytestmark = pytest.mark.timeout(90)

ENV = {
    "SEGMENT_BYTES": str(64 * 1024),
    "COMPACTION_INTERVAL": "0.5",
    "COMPACTION_BYTES_PER_SEC": "100000000",
    "GC_INTERVAL": "0.5",
    "GC_GRACE": "0",
    "ANTI_ENTROPY_INTERVAL": "3600",
    "SCRUB_INTERVAL": "3600",
}


def stats(server) -> dict:
    return http.get(server.url + "/stats", timeout=10).json()


def test_gc_then_compaction_gives_segments_back_and_survives_kill_9(make_cluster):
    cluster = make_cluster(chunk_servers=3, env=ENV)
    kept = random_bytes(300 * 1024, seed=1)
    with Client(cluster.url) as client:
        client.put("docs/kept.bin", kept)
    manifest = http.get(cluster.leader_url + "/manifest", params={"path": "docs/kept.bin"}, timeout=10)
    digests = decode_manifest(manifest.content).digest_list()
    server = cluster.servers[0]
    # 600 KiB committed on this server that no version names: GC's to delete, compaction's to reclaim
    for n in range(6):
        orphans = [random_bytes(1024, seed=10**6 + 1000 * n + i) for i in range(100)]
        http.post(server.url + "/chunks/prepare", params={"txn_id": f"orphan{n}"},
                  content=encode_frames([(sha256(o), o) for o in orphans]), timeout=10).raise_for_status()
        http.post(server.url + "/chunks/commit", json={"txn_ids": [f"orphan{n}"]}, timeout=10).raise_for_status()
    grown = stats(server)
    assert grown["segments"] >= 4  # GC and compaction may already be at work

    compacted = wait_until(lambda: (s := stats(server))["compacted_segments"] >= 3 and s, timeout=40,
                           interval=0.3, what="GC and compaction to give segments back")
    assert compacted["disk_bytes"] < grown["disk_bytes"] and compacted["gc_deleted"] >= 600

    server.kill()  # SIGKILL, wherever the jobs were
    server.start()
    held = [http.get(f"{server.url}/chunks/{d.hex()}", timeout=10) for d in digests]
    mine = [(d, r.content) for d, r in zip(digests, held) if r.status_code == 200]
    assert all(r.status_code in (200, 404) for r in held)
    assert mine and all(sha256(data) == d for d, data in mine)
    assert len(mine) == stats(server)["chunks"]  # after GC, only the kept file's chunks are left
    with Client(cluster.url) as client:
        assert client.get("docs/kept.bin") == kept
