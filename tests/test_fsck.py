"""fsck on a real cluster: healthy means ``ok`` with no problems and exit 0 from ``ringfs fsck``; after
``kill -9`` of one of three servers at RF 3 the chunks it held are under-replicated and the CLI exits 1
(docs/failure-handling.md, "fsck")."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from user_app.client.local_cluster import wait_until
from tests.utils.data import random_bytes
from user_app.client import Client
from tests.utils.auth import http

pytestmark = pytest.mark.timeout(60)

REPORT_KEYS = {"ok", "files", "chunks", "under_replicated", "lost", "misplaced", "replication_factor", "problems"}


def cli_fsck(url: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "user_app.client.cli", "fsck", "--url", url, *extra],
                          capture_output=True, text=True, timeout=50)


def test_fsck_healthy_then_after_kill(make_cluster):
    cluster = make_cluster(chunk_servers=3, replication=3)
    with Client(cluster.url) as c:
        c.put("f/a.bin", random_bytes(20 * 1024, seed=7))
        c.put("f/b.bin", random_bytes(5 * 1024 + 3, seed=8))
        c.put("f/gone.bin", random_bytes(4 * 1024, seed=9))
        c.rm("f/gone.bin")  # trashed versions are checked too
        c.put("f/empty.bin", b"")

        report = c.fsck()
        assert REPORT_KEYS <= set(report)
        assert report["ok"] is True and report["problems"] == []
        assert report["files"] == 4 and report["chunks"] == 20 + 6 + 4
        assert report["under_replicated"] == report["lost"] == report["misplaced"] == 0
        assert report["replication_factor"] == 3

        # The leader answers the same report directly.
        direct = http.get(cluster.leader_url + "/fsck", timeout=30).json()
        assert {k: direct[k] for k in REPORT_KEYS} == {k: report[k] for k in REPORT_KEYS}

        ok = cli_fsck(cluster.url)
        assert ok.returncode == 0, ok
        assert "OK" in ok.stdout
        raw = cli_fsck(cluster.url, "--json")
        assert raw.returncode == 0 and json.loads(raw.stdout)["ok"] is True

        cluster.servers[0].kill()
        # An unreachable server holds nothing: every chunk now has 2 of 3 copies (only 2 servers are left,
        # so no repair can bring it back to 3).
        report = wait_until(lambda: (r := c.fsck())["under_replicated"] > 0 and r, 30, 0.2, "under-replication")
        assert report["ok"] is False and report["lost"] == 0
        assert report["under_replicated"] == report["chunks"] == 30
        paths = {(p["path"], p["version"]) for p in report["problems"]}
        assert paths == {("f/a.bin", 1), ("f/b.bin", 1), ("f/gone.bin", 1)}
        trashed = next(p for p in report["problems"] if p["path"] == "f/gone.bin")
        assert trashed["under_replicated"] == 4 and trashed["state"] == "deleted"

        bad = cli_fsck(cluster.url)
        assert bad.returncode == 1, bad
        assert "f/a.bin" in bad.stdout
        raw = cli_fsck(cluster.url, "--json")
        assert raw.returncode == 1 and json.loads(raw.stdout)["under_replicated"] == 30


def test_fsck_on_an_empty_cluster_is_ok(cluster):
    with Client(cluster.url) as c:
        report = c.fsck()
    assert report["ok"] is True and report["files"] == report["chunks"] == 0 and report["problems"] == []


def test_fsck_rejects_other_methods_with_json(cluster):
    r = http.post(cluster.url + "/fsck", timeout=10)
    assert r.status_code == 405 and "error" in r.json()
    r = http.post(cluster.leader_url + "/fsck", timeout=10)
    assert r.status_code == 405 and "error" in r.json()
