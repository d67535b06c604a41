"""The trash through the user API on a real cluster: ``DELETE`` moves a file to the trash, ``GET /trash``
lists it, ``POST /undelete`` restores its most recent delete, and the purge drops it after
``TRASH_RETENTION`` (docs/failure-handling.md, "Trash")."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest

from user_app.client.local_cluster import wait_until
from tests.utils.data import random_bytes
from user_app.client import Client, ClientError
from tests.utils.auth import authed_client, http

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def trash_cluster(cluster):
    """The module's shared cluster (tests use distinct paths); expiry gets its own."""
    return cluster


def cli(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "user_app.client.cli", *args, "--url", url],
                          capture_output=True, text=True, timeout=30)


def test_delete_list_undelete_conflict_and_404(trash_cluster):
    with Client(trash_cluster.url) as c, authed_client(base_url=trash_cluster.url, timeout=30) as http:
        v1, v2 = random_bytes(3000, seed=1), random_bytes(1500, seed=2)
        c.put("t/a.bin", v1)
        c.put("t/a.bin", v2)
        c.put("t/keep.txt", b"keep")
        assert c.trash() == []

        before = time.time()
        c.rm("t/a.bin")
        with pytest.raises(ClientError) as gone:
            c.get("t/a.bin")
        assert gone.value.status == 404
        [entry] = c.trash()
        assert entry["path"] == "t/a.bin" and entry["size"] == len(v2) and entry["versions"] == 2
        assert before - 1 <= entry["deleted_at"] <= time.time() + 1
        assert entry["expires_at"] == pytest.approx(entry["deleted_at"] + 604800)

        r = http.post("/undelete", json={"path": "t/a.bin"})
        assert r.status_code == 200, r.text
        st = r.json()
        assert st["path"] == "t/a.bin" and st["version"] == 2 and st["size"] == len(v2)
        assert c.get("t/a.bin") == v2 and c.get("t/a.bin", version=1) == v1
        assert [v["version"] for v in c.versions("t/a.bin")] == [1, 2]
        assert c.trash() == []

        # Nothing left in the trash for it: 404.
        assert_error(http.post("/undelete", json={"path": "t/a.bin"}), 404)
        assert_error(http.post("/undelete", json={"path": "t/never-existed"}), 404)

        # Deleted, then written again: the live version wins, undelete is 409 and the trash keeps it.
        c.rm("t/a.bin")
        c.put("t/a.bin", b"new")
        assert_error(http.post("/undelete", json={"path": "t/a.bin"}), 409)
        assert [e["path"] for e in c.trash()] == ["t/a.bin"]
        assert c.get("t/a.bin") == b"new"

        # Only the most recent delete comes back.
        c.rm("t/a.bin")
        [entry] = c.trash()
        assert entry["versions"] == 1 and entry["size"] == 3
        assert c.undelete("t/a.bin")["version"] == 3
        assert c.get("t/a.bin") == b"new"
        assert [v["version"] for v in c.versions("t/a.bin")] == [3]
        c.rm("t/a.bin")
        assert c.undelete("t/a.bin")["version"] == 3  # the earlier delete stays in the trash
        assert_error(http.post("/undelete", json={"path": "t/a.bin"}), 409)


def test_undelete_cannot_make_a_name_both_a_file_and_a_folder(trash_cluster):
    with Client(trash_cluster.url) as c, authed_client(base_url=trash_cluster.url, timeout=30) as http:
        c.put("ff/a", b"file a")
        c.rm("ff/a")
        c.put("ff/a/b", b"a is a folder now")
        r = http.post("/undelete", json={"path": "ff/a"})
        assert_error(r, 409)
        assert "is a folder" in r.json()["error"]
        c.put("ff/x/y", b"y")
        c.rm("ff/x/y")
        c.put("ff/x", b"x is a file now")
        r = http.post("/undelete", json={"path": "ff/x/y"})
        assert_error(r, 409)
        assert "'ff/x' is a file" in r.json()["error"]
        assert c.get("ff/a/b") == b"a is a folder now" and c.get("ff/x") == b"x is a file now"
        assert {e["path"] for e in c.trash()} >= {"ff/a", "ff/x/y"}  # still restorable later


def test_cli_trash_and_undelete(trash_cluster):
    with Client(trash_cluster.url) as c:
        c.put("cli/doc.txt", b"hello trash")
        c.rm("cli/doc.txt")
    listed = cli(trash_cluster.url, "trash")
    assert listed.returncode == 0 and "cli/doc.txt" in listed.stdout, listed
    restored = cli(trash_cluster.url, "undelete", "cli/doc.txt")
    assert restored.returncode == 0 and "restored" in restored.stdout, restored
    again = cli(trash_cluster.url, "undelete", "cli/doc.txt")
    assert again.returncode == 1 and "404" in again.stderr, again
    with Client(trash_cluster.url) as c:
        assert c.get("cli/doc.txt") == b"hello trash"
    assert "cli/doc.txt" not in cli(trash_cluster.url, "trash").stdout


def test_bad_undelete_bodies_are_400_json(trash_cluster):
    with authed_client(base_url=trash_cluster.url, timeout=30) as http:
        for body in ({}, {"path": ""}, {"path": "../etc/passwd"}, {"path": 5}, {"src": "x"}):
            assert_error(http.post("/undelete", json=body), 400)
        assert_error(http.post("/undelete", content=b"{not json", headers={"content-type": "application/json"}), 400)


def test_trashed_versions_expire(make_cluster):
    cluster = make_cluster(chunk_servers=1, replication=1, env={"TRASH_RETENTION": "1", "SWEEP_INTERVAL": "0.2"})
    with Client(cluster.url) as c, authed_client(base_url=cluster.url, timeout=30) as http:
        c.put("exp/a.txt", b"short-lived")
        c.rm("exp/a.txt")
        for entry in c.trash():  # may already be purged: retention is 1 s
            assert entry["expires_at"] == pytest.approx(entry["deleted_at"] + 1)
        wait_until(lambda: c.trash() == [], 15, 0.1, "trash purge")
        assert_error(http.post("/undelete", json={"path": "exp/a.txt"}), 404)
        # The path is free for a new write, numbered after nothing: the purged rows are gone.
        assert c.put("exp/a.txt", b"again")["version"] == 1


def assert_error(r: httpx.Response, status: int) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    assert set(r.json()) == {"error"}
