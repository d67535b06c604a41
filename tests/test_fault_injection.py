"""Fault injection on real processes: ``kill -9``, ``SIGSTOP``/``SIGCONT``, restarts, on-disk corruption.

Every test checks the two promises: no write acknowledged to the client is lost or altered, and no
partially written file is ever visible. Intervals are shortened by environment variables (health checks
every 0.5 s, so a server is removed after 5 misses = 2.5 s; anti-entropy and scrub every second).
"""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest

from user_app.client.local_cluster import wait_until
from tests.utils.chunk_files import corrupt_chunk
from tests.utils.data import random_bytes
from tests.utils.load import WriteLoad
from user_app.client import Client, ClientError
from tests.utils.auth import http

pytestmark = pytest.mark.timeout(90)

REPAIR_ENV = {
    "ANTI_ENTROPY_INTERVAL": "1",
    "ANTI_ENTROPY_BYTES_PER_SEC": "50000000",
    "SCRUB_INTERVAL": "1",
    "SCRUB_BYTES_PER_SEC": "50000000",
    "RING_REFRESH": "0.5",
    "PENDING_TTL": "3",
}
REPAIR_TIMEOUT = 45  # seconds allowed for the cluster to converge after a fault


def write_files(client: Client, prefix: str, count: int, size: int = 5000) -> dict[str, bytes]:
    files = {f"{prefix}/f{i:03d}.bin": random_bytes(size + i) for i in range(count)}
    for path, data in files.items():
        client.put(path, data)
    return files


def fsck(cluster) -> dict:
    return http.get(cluster.url + "/fsck", timeout=60).json()


def wait_fsck_clean(cluster, timeout: float = REPAIR_TIMEOUT, misplaced_too: bool = False) -> dict:
    """Poll fsck until nothing is under-replicated or lost (and, with ``misplaced_too``, until handoff
    has dropped every copy outside the preference lists)."""
    def clean():
        report = fsck(cluster)
        done = report["under_replicated"] == 0 and report["lost"] == 0
        if misplaced_too:
            done = done and report["misplaced"] == 0
        return report if done else None
    return wait_until(clean, timeout, interval=0.5, what="fsck to report a fully replicated cluster")


def wait_state(cluster, svc, state: str, timeout: float = 20) -> None:
    def reached():
        for s in cluster.ring()["servers"]:
            if s["url"] == svc.url:
                return s["state"] == state
        return state == "removed"
    wait_until(reached, timeout, interval=0.1, what=f"{svc.name} to be {state}")


def assert_all_readable(client: Client, files: dict[str, bytes]) -> None:
    for path, data in files.items():
        assert client.get(path) == data, path


def test_kill_one_server_during_reads_no_read_fails(make_cluster, open_client):
    cluster = make_cluster(chunk_servers=5, env=REPAIR_ENV)
    client = open_client(cluster.url)
    files = write_files(client, "reads", 30)
    failures: list[str] = []
    reads = {"n": 0}
    stop = threading.Event()

    def reader():
        with Client(cluster.url) as c:
            while not stop.is_set():
                for path, data in files.items():
                    try:
                        if c.get(path) != data:
                            failures.append(f"{path}: wrong bytes")
                    except ClientError as exc:
                        failures.append(f"{path}: {exc}")
                    reads["n"] += 1

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    wait_until(lambda: reads["n"] >= 30, 30, what="reads to start")
    cluster.servers[1].kill()
    before = reads["n"]
    wait_until(lambda: reads["n"] >= before + 150, 60, what="150 reads after the kill")
    stop.set()
    for t in threads:
        t.join()
    assert failures == []


def test_kill_two_servers_then_repair_to_full_replication(make_cluster, open_client):
    cluster = make_cluster(chunk_servers=5, env=REPAIR_ENV)
    client = open_client(cluster.url)
    files = write_files(client, "two", 40)
    cluster.servers[0].kill()
    cluster.servers[3].kill()
    assert_all_readable(client, files)  # RF 3: every chunk keeps at least one copy
    wait_state(cluster, cluster.servers[0], "removed")
    wait_state(cluster, cluster.servers[3], "removed")
    report = wait_fsck_clean(cluster)
    assert report["files"] >= 40 and report["ok"]
    assert_all_readable(client, files)


def test_kill_server_mid_upload_succeeds_fully_or_fails_cleanly(make_cluster):
    cluster = make_cluster(chunk_servers=4, env=REPAIR_ENV)
    data = random_bytes(24 * 1024 * 1024, seed=33)
    victim = cluster.servers[2]

    def slow_body():
        for i in range(0, len(data), 256 * 1024):
            if i == 8 * 1024 * 1024:
                victim.kill()
            yield data[i : i + 256 * 1024]
            time.sleep(0.005)

    with Client(cluster.url) as client:
        try:
            result = client.put("mid/upload.bin", slow_body())
        except ClientError as exc:
            assert exc.status in (0, 502, 503), exc
            assert http.get(cluster.url + "/files/mid/upload.bin").status_code == 404
        else:
            assert result["size"] == len(data)
            assert client.get("mid/upload.bin") == data
            wait_state(cluster, victim, "removed")
            wait_fsck_clean(cluster)
    # Whatever was left pending on the live servers is swept after PENDING_TTL.
    live = [s for s in cluster.servers if s.alive]
    wait_until(lambda: all(http.get(s.url + "/stats").json()["pending_txns"] == 0 for s in live), 30,
               what="pending data to be swept")


def test_leader_restart_during_write_load(make_cluster):
    cluster = make_cluster(chunk_servers=3, env=REPAIR_ENV)
    ring_before = cluster.ring()
    with WriteLoad(cluster.url, "load", 3000, 500) as load:
        wait_until(lambda: len(load.acknowledged) >= 20, 30, what="writes before the outage")
        cluster.leader.kill()
        wait_until(lambda: len(load.errors) >= 3, 30, what="writes failing during the outage")
        cluster.leader.start()
        n_after = len(load.acknowledged)
        wait_until(lambda: len(load.acknowledged) >= n_after + 20, 30, what="writes succeeding after the restart")
    assert {e.status for e in load.errors} <= {503}, load.errors
    ring_after = cluster.ring()
    assert sorted(map(tuple, ring_after["vnodes"])) == sorted(map(tuple, ring_before["vnodes"]))
    assert ring_after["epoch"] == ring_before["epoch"]
    wait_until(lambda: all(s["state"] == "healthy" for s in cluster.ring()["servers"]), 20,
               what="chunk servers healthy after the leader restart")
    with Client(cluster.url) as c:
        assert_all_readable(c, load.acknowledged)


def test_frozen_server_is_removed_then_rejoins_and_converges(make_cluster, open_client):
    cluster = make_cluster(chunk_servers=4, env=REPAIR_ENV)
    client = open_client(cluster.url)
    files = write_files(client, "frozen", 30)
    victim = cluster.servers[1]
    epoch = cluster.ring()["epoch"]
    victim.signal(signal.SIGSTOP)
    try:
        wait_state(cluster, victim, "unhealthy")
        wait_state(cluster, victim, "removed")
        assert cluster.ring()["epoch"] > epoch
        more = write_files(client, "frozen-more", 10)  # written while it is out of the ring
    finally:
        victim.signal(signal.SIGCONT)
    wait_state(cluster, victim, "healthy", timeout=30)
    report = wait_fsck_clean(cluster, misplaced_too=True)
    assert report["ok"]
    assert_all_readable(client, {**files, **more})


def test_corrupt_chunk_on_disk_reads_stay_correct_and_scrub_repairs(make_cluster, open_client):
    cluster = make_cluster(chunk_servers=3, env=REPAIR_ENV)
    client = open_client(cluster.url)
    files = write_files(client, "corrupt", 10)
    victim = cluster.servers[0]
    victim.stop()
    digest = corrupt_chunk(victim.env["DATA_DIR"])
    victim.start()
    assert_all_readable(client, files)  # the bad copy is never served: hash check + fallback

    def repaired():
        r = http.get(f"{victim.url}/chunks/{digest.hex()}")
        return r.status_code == 200 and __import__("hashlib").sha256(r.content).digest() == digest
    wait_until(repaired, REPAIR_TIMEOUT, interval=0.5, what="the scrubber to repair the corrupt copy")
    stats = http.get(victim.url + "/stats").json()
    assert stats.get("corrupt", 0) >= 1 or stats.get("quarantined", 0) >= 1


def test_join_under_write_load_no_write_fails_and_rebalances(make_cluster):
    cluster = make_cluster(chunk_servers=3, env=REPAIR_ENV)
    with WriteLoad(cluster.url, "join", 4000, 700, timeout=120.0) as load:
        wait_until(lambda: len(load.acknowledged) >= 30, 30, what="writes before the join")
        newcomer = cluster.add_chunk_server()
        n = len(load.acknowledged)
        wait_until(lambda: len(load.acknowledged) >= n + 30, 30, what="writes after the join")
    assert [str(e) for e in load.errors] == []
    report = wait_fsck_clean(cluster, misplaced_too=True)
    assert report["ok"]
    assert http.get(newcomer.url + "/stats").json()["chunks"] > 0
    with Client(cluster.url) as c:
        assert_all_readable(c, load.acknowledged)
