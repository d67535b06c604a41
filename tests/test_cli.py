"""The ``ringfs`` CLI as a user runs it: ``ringfs up`` in one process, file commands in others."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
import pytest

from user_app.client.local_cluster import free_port, wait_until
from tests.utils.auth import http


# A user's shell: no test credentials in the environment, so the CLI finds the ones `ringfs up` wrote to
# ./ringfs-data/credentials (every command here runs in the test's folder, as a user's would).
USER_ENV = {k: v for k, v in os.environ.items() if not k.startswith("RINGFS_")}


def ringfs(*args: str, url: str | None = None, stdin: bytes | None = None, columns: int = 80,
           cwd=None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "user_app.client.cli", *args, *(["--url", url] if url else [])]
    env = {**USER_ENV, "COLUMNS": str(columns)}
    return subprocess.run(cmd, capture_output=True, input=stdin, timeout=120, env=env, cwd=cwd)


@pytest.fixture
def ringfs_up(tmp_path, monkeypatch):
    """``ringfs up`` on free ports in ``tmp_path`` (data in ``./ringfs-data``, the default), stopped with
    SIGINT (Ctrl-C) at the end."""
    port, leader_port, cs_port = free_port(), free_port(), free_port(count=3)  # ringfs up: cs_port..cs_port+2
    proc = subprocess.Popen(
        [sys.executable, "-m", "user_app.client.cli", "up", "--port", str(port),
         "--leader-port", str(leader_port), "--chunk-server-port", str(cs_port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path, env=USER_ENV)
    url = f"http://127.0.0.1:{port}"
    monkeypatch.chdir(tmp_path)  # the CLI commands run where the user ran `ringfs up`

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"ringfs up exited: {proc.stdout.read().decode()}")
        r = ringfs("status", url=url)
        return r.returncode == 0 and r.stdout.count(b"healthy") == 3

    wait_until(up, 60, interval=0.2, what="ringfs up")
    yield url, proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(30)


def test_up_put_get_ls_stat_mv_rm_and_ctrl_c(ringfs_up, tmp_path):
    url, proc = ringfs_up
    src = tmp_path / "report.txt"
    src.write_bytes(b"quarterly numbers\n" * 500)
    r = ringfs("put", str(src), "docs/report.txt", url=url)
    assert r.returncode == 0, r.stderr
    assert b"version 1" in r.stdout
    out = tmp_path / "copy.txt"
    assert ringfs("get", "docs/report.txt", str(out), url=url).returncode == 0
    assert out.read_bytes() == src.read_bytes()
    assert b"report.txt" in ringfs("ls", "docs", url=url).stdout
    assert b"9000" in ringfs("stat", "docs/report.txt", url=url).stdout
    assert ringfs("mv", "docs/report.txt", "docs/final.txt", url=url).returncode == 0
    assert ringfs("get", "docs/final.txt", "-", url=url).stdout == src.read_bytes()
    assert ringfs("rm", "docs/final.txt", url=url).returncode == 0
    assert b"docs/final.txt" in ringfs("trash", url=url).stdout
    assert ringfs("undelete", "docs/final.txt", url=url).returncode == 0
    status = ringfs("status", url=url, columns=200).stdout
    assert b"healthy" in status and b"33% (64 vnodes)" in status and b"chunks" in status
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
    assert proc.wait(30) == 0
    printed = proc.stdout.read()
    assert b"stopping RingFS" in printed
    assert b"ringfs-data/credentials" in printed  # it said where its credentials are


@pytest.mark.parametrize("args", [
    ("get", "no/such/file", "-"),
    ("stat", "no/such/file"),
    ("put", "/definitely/not/a/local/file", "x"),
    ("ls", "a//b"),
])
def test_errors_are_one_line_and_exit_1(ringfs_up, args):
    url, _ = ringfs_up
    r = ringfs(*args, url=url)
    assert r.returncode == 1
    err = r.stderr.decode().strip()
    assert err.startswith("error:") and "\n" not in err and "Traceback" not in err, err


def test_unreachable_cluster_is_one_line_error():
    r = ringfs("ls", url=f"http://127.0.0.1:{free_port()}")
    assert r.returncode == 1
    assert r.stderr.decode().startswith("error: cannot reach RingFS")
