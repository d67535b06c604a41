"""Standby leaders on one PostgreSQL (leader/election.py), across real processes: kill -9 and SIGSTOP of
the active leader under load, fencing of the old one, a takeover with a chunk server down, and SQLite's
refusal of a second leader. Needs ``RINGFS_TEST_POSTGRES`` (``.ci/run`` sets it in its second run)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import FAST_ENV, PG_ENV, create_postgres_database
from tests.utils.auth import ROOT_ACCESS_KEY, ROOT_SECRET_KEY, authed_client
from tests.utils.load import MixedLoad, check_every_acked_write
from user_app.client.local_cluster import LocalCluster

needs_postgres = pytest.mark.skipif(not os.environ.get(PG_ENV), reason=f"{PG_ENV} not set: standby leaders need PostgreSQL")
RESUME_S = 15.0  # seconds within which reads and writes resume after the active leader dies


@pytest.fixture
def ha_cluster(tmp_path_factory):
    """Two leaders on a fresh PostgreSQL database, 3 chunk servers, 1 user app."""
    data = tmp_path_factory.mktemp("ha")
    c = LocalCluster(data_dir=data, chunk_servers=3, user_apps=1, replication=3, env=FAST_ENV, leaders=2,
                     database_url=create_postgres_database("ringfs_ha"))
    with c:
        yield c


@needs_postgres
def test_healthz_names_the_roles_and_a_standby_refuses_with_the_active_leaders_url(ha_cluster):
    active = ha_cluster.active_leader()
    standby = next(svc for svc in ha_cluster.all_leaders() if svc is not active)
    a, s = ha_cluster.leader_health(active), ha_cluster.leader_health(standby)
    assert a["role"] == "active" and a["term"] >= 1 and s["role"] == "standby" and s["term"] is None
    with authed_client(base_url=standby.url, timeout=10) as leader:
        r = leader.get("/ring")
        assert r.status_code == 503 and r.headers["x-ringfs-active-leader"] == active.url
        assert active.url in r.json()["error"]


@needs_postgres
def test_ringfs_status_names_the_active_leader_and_its_term(ha_cluster):
    from tests.test_cli import USER_ENV, ringfs
    active = ha_cluster.active_leader()
    term = ha_cluster.leader_health(active)["term"]
    env = {**USER_ENV, "RINGFS_ACCESS_KEY": ROOT_ACCESS_KEY, "RINGFS_SECRET_KEY": ROOT_SECRET_KEY}
    run = ringfs("status", url=ha_cluster.url, columns=200, env=env)
    out = run.stdout.decode() + run.stderr.decode()
    assert f"leader {active.url}: active, term {term}" in out, out
    standby = next(svc for svc in ha_cluster.all_leaders() if svc is not active)
    assert f"leader {standby.url}: standby" in out, out


@needs_postgres
def test_kill_9_of_the_active_leader_under_load(ha_cluster):
    first = ha_cluster.active_leader()
    term = ha_cluster.leader_health(first)["term"]
    with MixedLoad(ha_cluster.url) as load:
        load.wait_ok_after("write", 0)
        time.sleep(1.0)
        killed_at = time.monotonic()
        first.kill()
        second = ha_cluster.active_leader(timeout=30)
        assert second is not first and ha_cluster.leader_health(second)["term"] > term
        read_at = load.wait_ok_after("read", killed_at)
        write_at = load.wait_ok_after("write", killed_at)
        time.sleep(0.5)
    print(f"\nreads resumed {read_at - killed_at:.1f} s, writes {write_at - killed_at:.1f} s after kill -9;"
          f" outcomes after it: {load.summary(killed_at)}")
    assert read_at - killed_at <= RESUME_S and write_at - killed_at <= RESUME_S
    failed = {status for (kind, status) in load.summary(killed_at) if status not in (200, 201)}
    assert failed <= {503}, f"the outage answered other than 503: {load.summary(killed_at)}"
    check_every_acked_write(ha_cluster.url, load.acked)


@needs_postgres
def test_a_paused_leader_is_fenced_and_becomes_a_standby(ha_cluster):
    first = ha_cluster.active_leader()
    term = ha_cluster.leader_health(first)["term"]
    with authed_client(base_url=ha_cluster.url, timeout=30) as http:
        assert http.put("/files/ha/before.txt", content=b"before").status_code == 201
    stopped_at = time.monotonic()
    os.kill(first.proc.pid, signal.SIGSTOP)
    attempt: dict = {}
    try:
        second = ha_cluster.active_leader(timeout=30)
        print(f"\nthe standby took over {time.monotonic() - stopped_at:.1f} s after SIGSTOP of the active leader")
        assert second is not first and ha_cluster.leader_health(second)["term"] == term + 1
        with authed_client(base_url=ha_cluster.url, timeout=30) as http:
            assert http.put("/files/ha/during.txt", content=b"during").status_code == 201

        def write_to_the_old_leader() -> None:  # queued in its socket while it is stopped
            with authed_client(base_url=first.url, timeout=30) as old:
                attempt["answer"] = old.post("/folders", json={"path": "ha/written-by-the-old-leader"})
        writer = threading.Thread(target=write_to_the_old_leader)
        writer.start()
        time.sleep(0.5)
    finally:
        os.kill(first.proc.pid, signal.SIGCONT)
    writer.join(40)
    assert attempt["answer"].status_code == 503, attempt["answer"].text
    with authed_client(base_url=second.url, timeout=30) as leader:
        assert leader.get("/folders", params={"path": "ha/written-by-the-old-leader"}).status_code == 404
    # the old leader answers as a standby, and its own attempt to write was refused by the term
    deadline = time.monotonic() + 20
    while (ha_cluster.leader_health(first) or {}).get("role") != "standby":
        assert time.monotonic() < deadline, "the resumed leader did not step down"
        time.sleep(0.1)
    log = first.log_path.read_text()
    assert "lost the lock" in log, log[-2000:]
    with authed_client(base_url=ha_cluster.url, timeout=30) as http:
        assert http.get("/files/ha/before.txt").content == b"before"
        assert http.get("/files/ha/during.txt").content == b"during"


@needs_postgres
def test_takeover_with_a_chunk_server_down_removes_no_healthy_server(ha_cluster):
    down = ha_cluster.servers[0]
    down.kill()
    first = ha_cluster.active_leader()
    first.kill()
    second = ha_cluster.active_leader(timeout=30)
    time.sleep(1.0)
    ring = ha_cluster.ring()
    states = {s["url"]: s["state"] for s in ring["servers"]}
    assert all(states[svc.url] == "healthy" for svc in ha_cluster.servers[1:]), states
    assert states[down.url] != "healthy"
    assert second.alive


def test_a_second_leader_on_one_sqlite_database_refuses_to_start(tmp_path):
    with LocalCluster(data_dir=tmp_path, chunk_servers=1, replication=1, env=FAST_ENV) as cluster:  # SQLite
        env = {**os.environ, **cluster.leader.env, "PORT": "0"}
        env.pop("DATABASE_URL", None)
        proc = subprocess.run([sys.executable, "-m", "leader"], env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode != 0
        assert "another leader is running on the SQLite database" in proc.stderr + proc.stdout
        assert cluster.leader_health(cluster.leader)["role"] == "active"
