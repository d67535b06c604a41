"""``/metrics`` on every service, scraped before and after an upload: the counters move."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.utils.data import random_bytes
from tests.utils.auth import http


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """``{(sample name, sorted labels): value}`` from a Prometheus text page."""
    resp = http.get(url + "/metrics", timeout=10)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_move_after_an_upload(cluster, client):
    app, leader, servers = cluster.apps[0].url, cluster.leader_url, [s.url for s in cluster.servers]
    before_app, before_leader = scrape(app), scrape(leader)
    before_cs = [scrape(u) for u in servers]
    data = random_bytes(50_000, seed=11)
    client.put("metrics/a.bin", data)
    assert client.get("metrics/a.bin") == data
    after_app, after_leader = scrape(app), scrape(leader)
    after_cs = [scrape(u) for u in servers]

    put = dict(service="user_app", method="PUT", route="/files/{path:path}", status="201")
    assert value(after_app, "ringfs_http_requests_total", **put) == value(before_app, "ringfs_http_requests_total", **put) + 1
    assert value(after_app, "ringfs_user_bytes_in_total") - value(before_app, "ringfs_user_bytes_in_total") == len(data)
    assert value(after_app, "ringfs_user_bytes_out_total") - value(before_app, "ringfs_user_bytes_out_total") == len(data)
    assert value(after_app, "ringfs_user_writes_total", outcome="committed") >= 1
    lat = dict(service="user_app", method="PUT", route="/files/{path:path}")
    assert value(after_app, "ringfs_http_request_duration_seconds_count", **lat) > value(
        before_app, "ringfs_http_request_duration_seconds_count", **lat)

    assert value(after_leader, "ringfs_versions", state="committed") == value(before_leader, "ringfs_versions", state="committed") + 1
    assert value(after_leader, "ringfs_chunk_servers", state="healthy") == 3
    assert value(after_leader, "ringfs_ring_epoch") >= 3
    assert value(after_leader, "ringfs_files") >= 1

    # RF 3 on 3 servers: every server gained the file's 49 chunks.
    for b, a in zip(before_cs, after_cs):
        assert value(a, "ringfs_chunk_committed_chunks") - value(b, "ringfs_chunk_committed_chunks") == 49
        assert value(a, "ringfs_chunk_committed_bytes") - value(b, "ringfs_chunk_committed_bytes") == len(data)
        prepare = dict(service="chunk_server", method="POST", route="/chunks/prepare", status="200")
        assert value(a, "ringfs_http_requests_total", **prepare) > value(b, "ringfs_http_requests_total", **prepare)
        assert ("ringfs_chunk_scrubbed_total", ()) in a


def test_request_id_is_echoed(cluster):
    r = http.get(cluster.url + "/healthz", headers={"X-Request-ID": "abc123"})
    assert r.headers["x-request-id"] == "abc123"
    assert len(http.get(cluster.url + "/healthz").headers["x-request-id"]) == 16
