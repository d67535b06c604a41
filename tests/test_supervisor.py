"""``ringfs up`` as a supervisor (``user_app/client/supervisor.py``): real processes, killed and signalled
as a user's would be. ``Up`` is ``tests/test_cli.py``'s: ``ringfs up`` on free ports in a folder of its own."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

from tests.test_cli import USER_ENV, Up, ringfs
from user_app.client.local_cluster import free_port, wait_until
from user_app.client.supervisor import Backoff
from user_app.client.up_control import PID_FILE


@pytest.fixture
def make_up(tmp_path):
    """Factory: ``make_up(*options)`` starts ``ringfs up`` in a fresh folder; whatever is left of it is
    stopped at teardown."""
    started: list[Up] = []

    def make(*extra: str, wait: bool = True, servers: int = 4) -> Up:
        folder = tmp_path / f"up{len(started)}"
        folder.mkdir()
        up = Up(folder, *extra)
        started.append(up)
        if wait:
            up.wait_up(servers)
        return up

    yield make
    for up in started:
        up.kill_all()


def listen_on(port: int) -> socket.socket:
    """A listener on ``port``. Right after a process dies its port cannot be bound for a few milliseconds
    (its connections are closing), so this retries for up to half a second."""
    deadline = time.monotonic() + 0.5
    while True:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
            return s
        except OSError:
            s.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def gone(pids) -> bool:
    return not any(running(p) for p in pids)


def test_backoff_doubles_to_the_cap_and_resets_after_a_stable_run():
    b = Backoff(first=1, cap=30, stable_after=60)
    assert [b.next_delay(up_for=0.5) for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert b.next_delay(up_for=61) == 1  # it had stayed up a while: back to the first delay
    assert b.next_delay(up_for=3) == 2


def test_a_crashed_child_is_restarted_with_a_new_pid_and_a_backoff(make_up):
    up = make_up()
    old = up.pids()["chunk_server_2"]
    url = f"http://127.0.0.1:{up.cs_port + 1}"
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: up.pids()["chunk_server_2"] != old, 20, 0.1, "a restart of chunk_server_2")
    new = up.pids()["chunk_server_2"]
    [line] = [ln for ln in up.output().splitlines() if f"pid {new}," in ln]
    assert line.startswith("warning: chunk_server_2 killed by SIGKILL after ") and "restarted 1." in line, line
    assert line.endswith("ringfs-data/logs/chunk_server_2.log")
    assert running(new) and not running(old)
    wait_until(lambda: url in up.healthy() and len(up.healthy()) == 4, 60, 0.5, "chunk_server_2 healthy again")

    os.kill(new, signal.SIGKILL)  # again, soon after: the next restart waits twice as long
    wait_until(lambda: up.pids()["chunk_server_2"] != new, 20, 0.1, "a second restart")
    second = [ln for ln in up.output().splitlines() if f"pid {up.pids()['chunk_server_2']}," in ln][0]
    waited = float(re.search(r"restarted ([\d.]+) s later", second).group(1))
    assert 2.0 <= waited < 3.0, second
    assert up.output().count("warning:") == 2  # one line per restart, nothing repeated meanwhile
    assert up.stop(signal.SIGTERM) == 0
    assert gone(up.pids().values())


def test_ctrl_c_while_a_child_is_dead_and_another_frozen_stops_everything(make_up):
    up = make_up("--chunk-servers", "3", servers=3)
    assert "warning: 3 chunk servers for replication factor 3: with one of them down" in up.output()
    pids = up.pids()
    os.kill(pids["chunk_server_1"], signal.SIGKILL)
    wait_until(lambda: gone([pids["chunk_server_1"]]), 10, 0.02, "chunk_server_1 dead")
    holder = listen_on(up.cs_port)  # its port is taken: it cannot come back, it stays dead
    try:
        wait_until(lambda: f"port {up.cs_port} is in use, so it is not restarted" in up.output(), 20, 0.1,
                   "the restart to be refused")
        os.kill(pids["chunk_server_2"], signal.SIGSTOP)  # frozen: it cannot handle SIGTERM until SIGCONT
        assert up.stop(signal.SIGINT, timeout=30) == 0
    finally:
        holder.close()
    assert "stopping RingFS" in up.output()
    wait_until(lambda: gone(pids.values()), 10, 0.1, "every child gone")
    assert not (up.folder / "ringfs-data" / PID_FILE).exists()


def test_ctrl_c_while_starting_stops_what_started(make_up):
    up = make_up(wait=False)
    wait_until(lambda: "chunk_server_1" in up.output(), 60, 0.05, "the chunk servers to start")
    assert "RingFS is up" not in up.output()
    assert up.stop(signal.SIGINT, timeout=30) == 0, up.output()
    assert "RingFS is up" not in up.output() and "stopping RingFS" in up.output()
    wait_until(lambda: gone(up.pids().values()), 10, 0.1, "every child gone")


def test_server_add_gives_one_more_healthy_supervised_server(make_up, tmp_path):
    up = make_up()
    r = up.cli("server", "add", url=False)
    assert r.returncode == 0, r.stderr
    added = r.stdout.decode()
    assert added.startswith("added chunk_server_5 ") and "5 healthy chunk servers" in added, added
    healthy = up.healthy()
    assert len(healthy) == 5 and f"http://127.0.0.1:{up.cs_port + 4}" in healthy
    pid = up.pids()["chunk_server_5"]
    assert f"pid {pid}," in added
    os.kill(pid, signal.SIGKILL)  # supervised like the others
    wait_until(lambda: up.pids()["chunk_server_5"] != pid, 20, 0.1, "a restart of chunk_server_5")

    # Its port taken: a clear one-line answer, and the cluster is untouched.
    with listen_on(up.cs_port + 5):
        r = up.cli("server", "add", url=False)
    assert r.returncode == 1 and r.stderr.decode().count("\n") == 1, r.stderr
    assert f"port {up.cs_port + 5} is in use: chunk_server_6" in r.stderr.decode()
    # A second ringfs up on the same data dir: refused, one line.
    r = up.cli("up", url=False, timeout=60)
    assert r.returncode == 1 and r.stderr.decode().startswith(f"error: another ringfs up (pid {up.proc.pid}) "), r.stderr
    # No ringfs up in this folder: one line that says so.
    r = ringfs("server", "add", cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.decode().startswith("error: no ringfs up runs with data dir "), r.stderr
    assert up.stop() == 0


@pytest.mark.parametrize("taken, who", [("leader", "the leader wants it"), ("chunk3", "chunk_server_3 wants it"),
                                        ("app", "the user app wants it")])
def test_a_port_in_use_is_one_line_naming_it_and_who_wanted_it(tmp_path, taken, who):
    port, leader_port, cs_port = free_port(), free_port(), free_port(count=4)
    busy = {"leader": leader_port, "chunk3": cs_port + 2, "app": port}[taken]
    option = {"leader": "--leader-port", "chunk3": "--chunk-server-port", "app": "--port"}[taken]
    with listen_on(busy):
        r = subprocess.run([sys.executable, "-m", "user_app.client.cli", "up", "--port", str(port),
                            "--leader-port", str(leader_port), "--chunk-server-port", str(cs_port)],
                           capture_output=True, cwd=tmp_path, env=USER_ENV, timeout=60)
    assert r.returncode == 1
    [line] = r.stderr.decode().splitlines()
    assert line.startswith(f"error: port {busy} is in use: {who}") and option in line, line
    assert b"pid " not in r.stdout  # checked before anything started
