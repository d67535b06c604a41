"""Degraded writes with a write quorum (user_app/writer.py): on the default 3-server layout with
replication factor 3, a chunk server killed with ``kill -9`` stops no write; every chunk keeps at least
MIN_WRITE_REPLICAS (2) copies, and the missing copies are made once the server is back or a new one joins,
with fsck clean on its own."""

from __future__ import annotations

import pytest

from tests.utils.auth import http
from tests.utils.load import WriteLoad
from tests.utils.scrape import metric
from user_app.client.local_cluster import wait_until

pytestmark = pytest.mark.timeout(120)

REPAIR_ENV = {"ANTI_ENTROPY_INTERVAL": "1", "ANTI_ENTROPY_BYTES_PER_SEC": "100000000", "RING_REFRESH": "0.3"}


def fsck_clean(cluster) -> dict | None:
    report = http.get(cluster.url + "/fsck", timeout=60).json()
    return report if report["under_replicated"] == 0 and report["lost"] == 0 else None


@pytest.mark.parametrize("recovery", ["restart", "new server"])
def test_one_dead_server_of_three_stops_no_write_and_repairs_on_its_own(make_cluster, open_client, recovery):
    cluster = make_cluster(chunk_servers=3, env=REPAIR_ENV)
    client = open_client(cluster.url)
    victim = cluster.servers[1]
    with WriteLoad(cluster.url, "quorum", size=3000, spread=4000) as load:
        wait_until(lambda: len(load.acknowledged) >= 20, 30, what="writes before the kill")
        victim.kill()  # kill -9, in the middle of the load
        at_kill = len(load.acknowledged)
        wait_until(lambda: len(load.acknowledged) >= at_kill + 60, 60, interval=0.1, what="writes after the kill")
    assert load.errors == [], f"{len(load.errors)} of {len(load.errors) + len(load.acknowledged)} writes failed: {load.errors[:3]}"
    assert metric(cluster.url, "ringfs_user_under_replicated_writes_total") > 0
    with http.stream("PUT", cluster.url + "/files/quorum/one-more", content=b"x" * 5000) as r:
        r.read()
        assert r.status_code == 201 and r.json()["replicas"] == 2, r.text
    for path, data in load.acknowledged.items():
        assert client.get(path) == data, path
    assert fsck_clean(cluster) is None  # the missing copies are missing, until a third server is back

    if recovery == "restart":
        victim.start()
    else:
        cluster.add_chunk_server()
    report = wait_until(lambda: fsck_clean(cluster), 60, interval=1, what="fsck clean on its own")
    assert report["files"] >= len(load.acknowledged)
    for path, data in load.acknowledged.items():
        assert client.get(path) == data, path


def test_below_the_quorum_writes_fail_cleanly(make_cluster, open_client):
    cluster = make_cluster(chunk_servers=3, env=REPAIR_ENV)
    for svc in cluster.servers[1:]:
        svc.kill()
    wait_until(lambda: sum(s["state"] == "healthy" for s in cluster.ring()["servers"]) == 1, 20,
               what="the leader to see two servers down")
    r = http.put(cluster.url + "/files/quorum/too-few", content=b"y" * 3000)
    assert r.status_code == 503 and "MIN_WRITE_REPLICAS" in r.json()["error"], r.text
    assert http.get(cluster.url + "/files/quorum/too-few").status_code == 404
