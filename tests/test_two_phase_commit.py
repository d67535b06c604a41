"""Two-phase commit: a user app that dies after any phase leaves no visible file, and what it left
pending is swept after PENDING_TTL (reference design, "Two-Phase Commit Process")."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from user_app.client.local_cluster import wait_until
from tests.utils.data import random_bytes
from user_app.client import Client
from tests.utils.auth import http

PENDING_TTL_ENV = {"PENDING_TTL": "2", "SWEEP_INTERVAL": "0.5"}


def pending_on_chunk_servers(cluster) -> int:
    return sum(http.get(s.url + "/stats").json()["pending_txns"] for s in cluster.servers)


def pending_on_leader(cluster) -> int:
    """Pending (phase-2, uncommitted) versions in the leader's SQL, from its ``ringfs_versions`` gauge."""
    for family in text_string_to_metric_families(http.get(cluster.leader_url + "/metrics").text):
        for sample in family.samples:
            if sample.name == "ringfs_versions" and sample.labels.get("state") == "pending":
                return int(sample.value)
    raise AssertionError("the leader exports no ringfs_versions{state=\"pending\"} gauge")


@pytest.mark.parametrize("phase", [1, 2, 3])
def test_crash_after_each_phase_leaves_no_visible_file(make_cluster, open_client, phase):
    cluster = make_cluster(env=PENDING_TTL_ENV)
    good = open_client(cluster.url)
    keep = random_bytes(50_000, seed=7)
    good.put("kept/file.bin", keep)

    doomed = cluster.add_user_app(env={"CRASH_AFTER_PHASE": str(phase)})
    data = random_bytes(20_000, seed=phase)
    with pytest.raises(httpx.HTTPError):
        http.put(doomed.url + "/files/partial/file.bin", content=data, timeout=30)
    wait_until(lambda: not doomed.alive, 10, what="the crashing user app to exit")

    # Nothing of the interrupted write is visible, from any user app.
    assert http.get(cluster.url + "/files/partial/file.bin").status_code == 404
    assert http.get(cluster.url + "/stat/partial/file.bin").status_code == 404
    assert http.get(cluster.url + "/list/partial").status_code == 404
    # Other files are still readable, and the cluster still takes writes.
    assert good.get("kept/file.bin") == keep
    assert good.put("after/crash.bin", b"ok")["version"] == 1
    # Pending chunk data and the leader's pending version (phases 2 and 3 left one) are swept once
    # PENDING_TTL has passed.
    wait_until(lambda: pending_on_chunk_servers(cluster) == 0, 20, what="pending chunk data to be swept")
    wait_until(lambda: pending_on_leader(cluster) == 0, 20, what="the leader's pending version to be swept")
    # The name stays free: a create-only PUT of the same path succeeds, as the path's first version.
    assert good.put("partial/file.bin", data, create_only=True)["version"] == 1
    assert good.get("partial/file.bin") == data


def test_failed_prepare_on_leader_aborts_chunk_data(make_cluster):
    """A create-only conflict found in phase 2 fails the write and aborts its pending chunks at once."""
    cluster = make_cluster(env={"PENDING_TTL": "600"})
    with Client(cluster.url) as c:
        c.put("x/a.bin", b"v1")
        r = http.put(cluster.url + "/files/x/a.bin", content=random_bytes(10_000, seed=9),
                      headers={"If-None-Match": "*"})
        assert r.status_code == 412
        assert c.get("x/a.bin") == b"v1"
        wait_until(lambda: pending_on_chunk_servers(cluster) == 0, 10, what="pending data aborted")
