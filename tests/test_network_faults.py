"""Faults on real connections (``tests/utils/fault_proxy.py``): a chunk server whose link is black-holed in
the middle of a write, and a slow link to one replica during reads.

The chunk server under test advertises the proxy's URL, so every peer reaches it through the proxy: user
apps, the other chunk servers and the leader's health checks all see the same partitioned or slow link.
"""

from __future__ import annotations

import hashlib
import threading

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.utils.data import random_bytes
from tests.utils.fault_proxy import FaultProxy
from user_app.client.local_cluster import free_port, wait_until
from tests.utils.auth import authed_client, http

pytestmark = pytest.mark.timeout(120)


def behind_proxy(cluster, env: dict[str, str] | None = None) -> tuple[object, FaultProxy]:
    """One more chunk server, reachable by the cluster only through a fault proxy."""
    port, proxy_port = free_port(), free_port()
    proxy = FaultProxy(upstream_port=port, port=proxy_port).start()
    svc = cluster.add_chunk_server(port=port, env={"ADVERTISE_URL": proxy.url, **(env or {})})
    return svc, proxy


def counter(url: str, name: str) -> float:
    text = http.get(url + "/metrics", timeout=10).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


def _blocks(data: bytes, block: int, halfway: threading.Event):
    """Stream ``data`` in ``block``-byte pieces; ``halfway`` is set once half of it was handed over."""
    for i in range(0, len(data), block):
        if i >= len(data) // 2:
            halfway.set()
        yield data[i:i + block]


def test_partition_of_a_chunk_server_mid_write_never_shows_a_partial_file(make_cluster):
    # 3 servers plus one behind the proxy: with RF 3, the partitioned one can be done without.
    cluster = make_cluster(chunk_servers=3, env={"REQUEST_TIMEOUT": "3"})
    _, proxy = behind_proxy(cluster)
    try:
        data = random_bytes(12 * 1024 * 1024, seed=5)
        halfway = threading.Event()
        result: dict = {}

        def upload() -> None:
            try:
                r = http.put(cluster.url + "/files/part/big.bin", content=_blocks(data, 256 * 1024, halfway),
                              timeout=90)
                result["status"], result["body"] = r.status_code, r.json()
            except httpx.HTTPError as exc:  # the user app must answer, never hang up
                result["exc"] = exc

        t = threading.Thread(target=upload)
        t.start()
        assert halfway.wait(60), "the upload never got halfway"
        proxy.blackhole()  # the link goes silent: no reset, no answer
        t.join(100)
        assert not t.is_alive(), "the upload hung on the partitioned server"
        assert "exc" not in result, result
        if result["status"] == 201:  # every chunk found its copies elsewhere
            assert result["body"]["sha256"] == hashlib.sha256(data).hexdigest()
            assert http.get(cluster.url + "/files/part/big.bin", timeout=60).content == data
        else:  # or a clean error, and nothing of the write is visible
            assert result["status"] == 503 and "error" in result["body"], result
            assert http.get(cluster.url + "/files/part/big.bin").status_code == 404
        # The cluster keeps serving without the partitioned server: once the leader stops placing
        # chunks on it, the same upload succeeds.
        wait_until(lambda: any(s["url"] == proxy.url and s["state"] != "healthy" for s in cluster.ring()["servers"]),
                   30, what="the leader to notice the partition")
        r = http.put(cluster.url + "/files/part/big.bin", content=data, timeout=90)
        assert r.status_code == 201, r.text
        assert http.get(cluster.url + "/files/part/big.bin", timeout=60).content == data
    finally:
        proxy.stop()


def test_slow_link_to_one_replica_reads_stay_correct(make_cluster):
    # Health checks tolerate the slow link (so the server stays a healthy replica); user-app requests to
    # it give up after 1 s and fall back to the next replica.
    env = {"REQUEST_TIMEOUT": "1", "HEALTH_CHECK_TIMEOUT": "8"}
    cluster = make_cluster(chunk_servers=2, env=env)
    _, proxy = behind_proxy(cluster, env)
    try:
        files = {f"slow/f{i:02d}": random_bytes(20_000 + i, seed=i) for i in range(24)}
        with authed_client(base_url=cluster.url, timeout=60) as http:
            for path, data in files.items():
                assert http.put(f"/files/{path}", content=data).status_code == 201
            fallbacks = counter(cluster.url, "ringfs_user_chunk_fallbacks_total")

            proxy.delay(0.3)  # slower than usual, within the timeout
            for path, data in files.items():
                assert http.get(f"/files/{path}").content == data, path

            proxy.delay(1.5)  # slower than the user app waits: the other replicas serve
            for path, data in files.items():
                assert http.get(f"/files/{path}").content == data, path
            assert counter(cluster.url, "ringfs_user_chunk_fallbacks_total") > fallbacks
            slow = next(s for s in cluster.ring()["servers"] if s["url"] == proxy.url)
            assert slow["state"] == "healthy", slow  # slow, not down: still a replica
    finally:
        proxy.stop()
