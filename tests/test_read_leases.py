"""Read leases (``leader/read_leases.py``, ``user_app/manifest_leases.py``) on real processes: two user
apps, one writing and one reading from its lease cache, never see a stale version after a write was
acknowledged: not after an overwrite, a delete, an undelete or a rename; not when the reading user app
was killed with ``kill -9`` or paused while it held leases; not across a leader restart. A user app cut
off from the leader serves from its cache only until its lease ends.

Leases last 8 s here (production: 3 s), so that each fault below happens while a lease still runs: a
wrong implementation would serve the old bytes."""

from __future__ import annotations

import signal

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.protocol.rules import LEASE_HOLDER_HEADER, LEASE_REVOKE_PATH
from tests.utils.auth import ROOT, TestAuth, http
from tests.utils.data import random_bytes
from user_app.client import Client, ClientError
from user_app.client.local_cluster import wait_until

pytestmark = pytest.mark.timeout(150)

LEASE_ENV = {"LEASE_SECONDS": "8", "REQUEST_TIMEOUT": "12"}


def sample(url: str, name: str, **labels: str) -> float:
    """The value of metric ``name`` with ``labels`` on ``url``/metrics (0 when absent)."""
    text = http.get(url + "/metrics").text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def hits(app_url: str) -> float:
    return sample(app_url, "ringfs_leased_manifest_lookups_total", outcome="hit")


def revocations(leader_url: str, outcome: str) -> float:
    return sample(leader_url, "ringfs_read_lease_revocations_total", outcome=outcome)


def read_under_lease(client: Client, app_url: str, path: str) -> bytes:
    """Read ``path`` through ``client`` until a read is answered under a lease (a leader grants none until
    its lease horizon is stored: the first lookups after a start may get none); every read must return
    the same bytes."""
    first = client.get(path)

    def hit() -> bool:
        before = hits(app_url)
        assert client.get(path) == first
        return hits(app_url) == before + 1
    wait_until(hit, timeout=10, interval=0.1, what="a read answered under a lease")
    return first


@pytest.fixture
def two_apps(make_cluster, open_client):
    cluster = make_cluster(user_apps=2, env=LEASE_ENV)
    a, b = cluster.apps
    return cluster, open_client(a.url), open_client(b.url)


def test_read_your_writes_across_user_apps(two_apps):
    cluster, a, b = two_apps
    b_url = cluster.apps[1].url
    v1, v2 = random_bytes(3000, seed=1), random_bytes(5000, seed=2)
    a.put("docs/plan.txt", v1)
    assert read_under_lease(b, b_url, "docs/plan.txt") == v1
    confirmed = revocations(cluster.leader.url, "confirmed")

    a.put("docs/plan.txt", v2)  # the leader revokes b's lease before the commit is visible
    assert b.get("docs/plan.txt") == v2
    assert revocations(cluster.leader.url, "confirmed") > confirmed
    assert read_under_lease(b, b_url, "docs/plan.txt") == v2

    a.rm("docs/plan.txt")
    with pytest.raises(ClientError) as gone:
        b.get("docs/plan.txt")
    assert gone.value.status == 404

    a.undelete("docs/plan.txt")
    assert read_under_lease(b, b_url, "docs/plan.txt") == v2

    a.mv("docs", "archive")  # a folder rename: every lease is revoked
    with pytest.raises(ClientError) as moved:
        b.get("docs/plan.txt")
    assert moved.value.status == 404
    assert b.get("archive/plan.txt") == v2

    # the writer's own lease too: a user app reads what it just wrote
    assert read_under_lease(a, cluster.apps[0].url, "archive/plan.txt") == v2
    a.put("archive/plan.txt", v1)
    assert a.get("archive/plan.txt") == v1
    assert b.get("archive/plan.txt") == v1


def test_killed_holder_write_waits_out_its_lease(two_apps):
    cluster, a, b = two_apps
    b_svc = cluster.apps[1]
    a.put("team/notes.txt", b"version one")
    read_under_lease(b, b_svc.url, "team/notes.txt")
    waited = revocations(cluster.leader.url, "waited")

    b_svc.kill()  # kill -9 while it holds the lease
    a.put("team/notes.txt", b"version two")  # acknowledged once the dead holder's lease ran out
    assert revocations(cluster.leader.url, "waited") == waited + 1
    assert a.get("team/notes.txt") == b"version two"

    b_svc.start()  # same address, new process: it holds nothing and reads the new version
    with Client(b_svc.url) as b2:
        assert b2.get("team/notes.txt") == b"version two"


def test_paused_holder_never_serves_a_stale_version(two_apps):
    cluster, a, b = two_apps
    b_svc = cluster.apps[1]
    a.put("team/budget.csv", b"q1")
    read_under_lease(b, b_svc.url, "team/budget.csv")

    b_svc.signal(signal.SIGSTOP)
    try:
        a.put("team/budget.csv", b"q2")  # b cannot confirm: the leader waits its lease out
    finally:
        b_svc.signal(signal.SIGCONT)
    assert b.get("team/budget.csv") == b"q2"


def test_cut_off_user_app_serves_from_cache_only_until_its_lease_ends(two_apps):
    cluster, a, b = two_apps
    a.put("shared/menu.txt", b"soup")
    read_under_lease(b, cluster.apps[1].url, "shared/menu.txt")  # b's lease ends at most 8 s after this

    cluster.leader.signal(signal.SIGSTOP)
    try:
        assert b.get("shared/menu.txt") == b"soup"  # served under the lease, without the leader

        def refused() -> bool:
            try:
                b.get("shared/menu.txt")
                return False
            except ClientError as exc:
                assert exc.status == 503, exc
                return True
        wait_until(refused, timeout=30, interval=0.5, what="the lease to end")
    finally:
        cluster.leader.signal(signal.SIGCONT)

    def served() -> bool:  # on PostgreSQL the paused leader first takes the election lock again
        try:
            return b.get("shared/menu.txt") == b"soup"
        except ClientError as exc:
            assert exc.status == 503, exc
            return False
    wait_until(served, timeout=60, interval=0.5, what="reads through the leader again")


def test_leader_restart_waits_out_leases_it_no_longer_knows(two_apps):
    cluster, a, b = two_apps
    b_url = cluster.apps[1].url
    a.put("ops/runbook.md", b"old steps")
    read_under_lease(b, b_url, "ops/runbook.md")

    cluster.leader.kill()
    cluster.leader.start()  # knows no lease: its first mutations wait until any old one has ended
    a.put("ops/runbook.md", b"new steps")
    assert b.get("ops/runbook.md") == b"new steps"


def test_lease_endpoints_refuse_strangers_and_bad_input(two_apps):
    cluster, a, _ = two_apps
    a.put("x.txt", b"x")
    manifest = cluster.leader.url + "/manifest"
    bad = http.get(manifest, params={"path": "x.txt"}, headers={LEASE_HOLDER_HEADER: "short ftp://x"})
    assert bad.status_code == 400 and LEASE_HOLDER_HEADER in bad.json()["error"]
    assert http.get(manifest, params={"path": "x.txt"},
                    headers={LEASE_HOLDER_HEADER: "abcdefgh12 http://127.0.0.1:9/prefix"}).status_code == 200

    url = cluster.apps[0].url + LEASE_REVOKE_PATH
    body = {"holder": "x" * 22, "paths": ["a.txt"]}
    assert httpx.post(url, json=body).status_code == 401  # nothing
    with httpx.Client(auth=TestAuth(basic=ROOT, cluster=False)) as user:  # the root key is no peer
        assert user.post(url, json=body).status_code == 401
    with httpx.Client(auth=TestAuth(basic=None)) as peer:
        wrong = peer.post(url, json=body)
        assert wrong.status_code == 409 and "not this process" in wrong.json()["error"]
        bad = peer.post(url, content=b"{not json")
        assert bad.status_code == 400 and "error" in bad.json()
        assert peer.post(url, json={"holder": 5}).status_code == 400
        assert peer.post(url, json={"holder": "x" * 22, "paths": "a.txt"}).status_code == 400
