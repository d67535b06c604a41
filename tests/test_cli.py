"""The ``ringfs`` CLI as a user runs it: ``ringfs up`` in one process, file commands in others.

``Up`` (also used by ``tests/test_supervisor.py``) starts ``ringfs up`` on free ports in a folder of its
own, as a user would: data in ``./ringfs-data``, its output in ``./up.out``, commands run in that folder
without test credentials so they find the ones ``ringfs up`` wrote.
"""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest

from user_app.client import Client
from user_app.client.local_cluster import free_port, wait_until


# A user's shell: no test credentials in the environment, so the CLI finds the ones `ringfs up` wrote to
# ./ringfs-data/credentials (every command here runs in the cluster's folder, as a user's would).
USER_ENV = {k: v for k, v in os.environ.items() if not k.startswith("RINGFS_")}
# The code under test is this tree's, whatever folder a command runs in (not an installed copy's).
ROOT = Path(__file__).resolve().parents[1]
USER_ENV["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
ISO_DATE = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)")


def ringfs(*args: str, url: str | None = None, stdin: bytes | None = None, columns: int = 80,
           cwd=None, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "user_app.client.cli", *args, *(["--url", url] if url else [])]
    return subprocess.run(cmd, capture_output=True, input=stdin, timeout=timeout,
                          env={**(USER_ENV if env is None else env), "COLUMNS": str(columns)}, cwd=cwd)


class Up:
    """``ringfs up`` started in ``folder`` (``extra``: more options), on free ports with room for 4 more
    chunk servers after the default 4."""

    def __init__(self, folder: Path, *extra: str) -> None:
        self.folder = folder
        self.port, self.leader_port, self.cs_port = free_port(), free_port(), free_port(count=8)
        self.out_path = folder / "up.out"
        with open(self.out_path, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "user_app.client.cli", "up", "--port", str(self.port),
                 "--leader-port", str(self.leader_port), "--chunk-server-port", str(self.cs_port),
                 "--s3-port", str(free_port()), *extra],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=folder, env=USER_ENV)
        self.url = f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.out_path.read_text(errors="replace")

    def cli(self, *args: str, url: bool = True, **kw) -> subprocess.CompletedProcess:
        return ringfs(*args, url=self.url if url else None, cwd=self.folder, **kw)

    def servers(self) -> list[dict]:
        r = self.cli("status", "--json")
        return json.loads(r.stdout)["servers"] if r.returncode == 0 else []

    def healthy(self) -> set[str]:
        return {s["url"] for s in self.servers() if s["state"] == "healthy"}

    def pids(self) -> dict[str, int]:
        """Each service's latest PID, from the start lines and the restart lines."""
        found = re.findall(r"(?m)^(?:warning: )?\s*(leader|chunk_server_\d+|user_app_\d+)\b[^\n]*?\bpid (\d+)",
                           self.output())
        return {name: int(pid) for name, pid in found}

    def wait_up(self, servers: int = 4, timeout: float = 90) -> None:
        def up() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ringfs up exited {self.proc.returncode}: {self.output()}")
            return "RingFS is up" in self.output() and len(self.healthy()) == servers
        wait_until(up, timeout, interval=0.2, what="ringfs up")

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)  # what Ctrl-C in the terminal sends to the foreground group
        return self.proc.wait(timeout)

    def kill_all(self) -> None:
        """Teardown whatever happened: stop ringfs up, then kill -9 any child it left."""
        try:
            self.stop(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for pid in self.pids().values():
            if self._ours(pid):
                os.kill(pid, signal.SIGKILL)

    def _ours(self, pid: int) -> bool:
        """Whether ``pid`` is still one of this cluster's services (not a process that reused the PID)."""
        try:
            p = psutil.Process(pid)
            env = p.environ()
            return (p.cmdline()[-1:] in (["leader"], ["chunk_server"], ["user_app"])
                    and (env.get("DATA_DIR", "").startswith(str(self.folder))
                         or env.get("LEADER_URL") == f"http://127.0.0.1:{self.leader_port}"))
        except (psutil.Error, OSError):
            return False


@pytest.fixture
def ringfs_up(tmp_path, monkeypatch):
    """``ringfs up`` in ``tmp_path`` (data in ``./ringfs-data``, the default), stopped with SIGINT."""
    up = Up(tmp_path)
    monkeypatch.chdir(tmp_path)  # the CLI commands run where the user ran `ringfs up`
    try:
        up.wait_up()
        yield up
    finally:
        up.kill_all()


@pytest.fixture(scope="module")
def shared_up(tmp_path_factory):
    """One ``ringfs up`` for the tests that only add files under paths of their own."""
    up = Up(tmp_path_factory.mktemp("shared-up"))
    try:
        up.wait_up()
        yield up
    finally:
        up.kill_all()


def test_up_put_get_ls_stat_mv_rm_and_ctrl_c(ringfs_up, tmp_path):
    up = ringfs_up
    url = up.url
    src = tmp_path / "report.txt"
    src.write_bytes(b"quarterly numbers\n" * 500)
    r = ringfs("put", str(src), "docs/report.txt", url=url)
    assert r.returncode == 0, r.stderr
    assert b"version 1" in r.stdout
    out = tmp_path / "copy.txt"
    assert ringfs("get", "docs/report.txt", str(out), url=url).returncode == 0
    assert out.read_bytes() == src.read_bytes()
    assert b"report.txt" in ringfs("ls", "docs", url=url).stdout
    stat = ringfs("stat", "docs/report.txt", url=url).stdout
    assert b"9000" in stat  # "size  8.8 KiB (9000 bytes)"
    assert re.search(rb"created_at +" + ISO_DATE.pattern, stat), stat  # ISO 8601, not epoch seconds
    assert ringfs("mv", "docs/report.txt", "docs/final.txt", url=url).returncode == 0
    assert ringfs("get", "docs/final.txt", "-", url=url).stdout == src.read_bytes()
    assert ringfs("rm", "docs/final.txt", url=url).returncode == 0
    assert b"docs/final.txt" in ringfs("trash", url=url).stdout
    assert ringfs("undelete", "docs/final.txt", url=url).returncode == 0
    status = ringfs("status", url=url, columns=200).stdout
    # 4 chunk servers by default (replication factor 3 + 1), each a quarter of the ring
    assert b"healthy" in status and b"25% (64 vnodes)" in status and b"chunks" in status
    printed = up.output()
    assert all(f"pid {pid}" in printed for pid in up.pids().values()) and len(up.pids()) == 6
    assert "log " in printed and "warning" not in printed  # 4 servers for RF 3: no warning
    assert f"WebDAV        {url}/dav/" in printed
    assert up.stop(signal.SIGINT) == 0  # what Ctrl-C in the terminal sends
    printed = up.output()
    assert "stopping RingFS" in printed
    assert "ringfs-data/credentials" in printed  # it said where its credentials are


@pytest.mark.parametrize("args", [
    ("get", "no/such/file", "-"),
    ("stat", "no/such/file"),
    ("put", "/definitely/not/a/local/file", "x"),
    ("ls", "a//b"),
    ("rm", "no/such/file"),
    ("rm", "-r", "no/such/folder"),
    ("versions", "no/such/file", "--json"),
])
def test_errors_are_one_line_and_exit_1(shared_up, args):
    r = shared_up.cli(*args)
    assert r.returncode == 1
    err = r.stderr.decode().strip()
    assert err.startswith("error:") and "\n" not in err and "Traceback" not in err, err
    assert r.stdout == b""


def test_unreachable_cluster_is_one_line_error():
    r = ringfs("ls", url=f"http://127.0.0.1:{free_port()}")
    assert r.returncode == 1
    assert r.stderr.decode().startswith("error: cannot reach RingFS")


def _put_tree(up: Up, local: Path, remote: str) -> None:
    r = up.cli("put", "-r", str(local), remote)
    assert r.returncode == 0, r.stderr


def test_tables_have_headers_human_sizes_and_never_wrap(shared_up, tmp_path):
    long_name = "a-rather-long-file-name-that-does-not-fit-in-forty-columns.txt"
    (tmp_path / "t" / "sub").mkdir(parents=True)
    (tmp_path / "t" / long_name).write_bytes(b"x" * 5000)
    (tmp_path / "t" / "sub" / "small.txt").write_bytes(b"tiny")
    _put_tree(shared_up, tmp_path / "t", "tables")
    r = shared_up.cli("ls", "tables", columns=40)
    lines = r.stdout.decode().splitlines()
    assert lines[0].split() == ["type", "size", "version", "modified", "name"], lines
    [row] = [line for line in lines if long_name in line]  # the whole name on one line: nothing wrapped
    assert row.startswith("file") and "4.9 KiB" in row and ISO_DATE.search(row.encode())
    assert any(line.split()[0] == "dir" and line.endswith("sub/") for line in lines[1:])
    assert all(line == line.rstrip() for line in lines)
    raw = shared_up.cli("ls", "-r", "tables", "--bytes", columns=40).stdout.decode()
    assert re.search(r"^file +5000 +1 ", raw, re.M) and "KiB" not in raw

    shared_up.cli("put", str(tmp_path / "t" / "sub" / "small.txt"), "tables/sub/small.txt")
    versions = shared_up.cli("versions", "tables/sub/small.txt", columns=40).stdout.decode().splitlines()
    assert versions[0].split() == ["version", "size", "created", "sha256"] and len(versions) == 3
    assert all(ISO_DATE.search(v.encode()) for v in versions[1:])
    assert shared_up.cli("rm", f"tables/{long_name}").returncode == 0
    trash = shared_up.cli("trash", columns=40).stdout.decode().splitlines()
    assert trash[0].split() == ["path", "size", "versions", "deleted", "expires"]
    assert any(long_name in line and len(ISO_DATE.findall(line.encode())) == 2 for line in trash)
    status = shared_up.cli("status", columns=40).stdout.decode().splitlines()
    assert status[1].split()[:3] == ["server", "url", "state"] and len(status) == 6


def test_json_outputs_are_the_api_answers(shared_up, tmp_path):
    (tmp_path / "j").mkdir()
    (tmp_path / "j" / "a.txt").write_bytes(b"json me")
    _put_tree(shared_up, tmp_path / "j", "json")
    assert shared_up.cli("rm", "json/a.txt").returncode == 0
    assert shared_up.cli("undelete", "json/a.txt").returncode == 0
    shared_up.cli("put", str(tmp_path / "j" / "a.txt"), "json/gone.txt")
    shared_up.cli("rm", "json/gone.txt")
    docs = {}
    for args in (("ls", "json"), ("ls", "-r", ""), ("stat", "json/a.txt"), ("versions", "json/a.txt"),
                 ("trash",), ("status",), ("fsck",)):
        r = shared_up.cli(*args, "--json")
        assert r.returncode == 0, (args, r.stderr)
        docs[args[0] + (" -r" if "-r" in args else "")] = json.loads(r.stdout)  # nothing but the JSON
    assert docs["ls"]["entries"][0]["path"] == "json/a.txt" and docs["ls"]["folder"] == "json"
    assert any(e["path"] == "json/a.txt" for e in docs["ls -r"]["entries"])
    assert docs["stat"]["size"] == 7 and isinstance(docs["stat"]["created_at"], float)
    assert [v["version"] for v in docs["versions"]["versions"]] == [1]
    assert any(e["path"] == "json/gone.txt" for e in docs["trash"]["entries"])
    assert len(docs["status"]["servers"]) == 4 and docs["status"]["replication_factor"] == 3
    assert docs["fsck"]["ok"] is True and "problems" in docs["fsck"]


def test_rm_of_a_folder_needs_r_and_rm_r_trashes_every_file(shared_up, tmp_path):
    tree = tmp_path / "tree"
    for rel in ("a.txt", "sub/b.txt", "sub/deeper/c.txt"):
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(rel)
    _put_tree(shared_up, tree, "rmme")
    _put_tree(shared_up, tree, "rmme-not")  # a sibling whose name starts the same: untouched
    r = shared_up.cli("rm", "rmme")
    assert r.returncode == 1 and r.stderr.decode().strip() == (
        "error: rmme is a folder: use rm -r to delete every file under it")
    assert len(json.loads(shared_up.cli("ls", "-r", "rmme", "--json").stdout)["entries"]) == 3
    r = shared_up.cli("rm", "-r", "rmme")
    assert r.returncode == 0, r.stderr
    assert b"removed 3 files under rmme" in r.stdout
    assert shared_up.cli("ls", "rmme").returncode == 1  # 404: the folder has no files any more
    trashed = {e["path"] for e in json.loads(shared_up.cli("trash", "--json").stdout)["entries"]}
    assert {"rmme/a.txt", "rmme/sub/b.txt", "rmme/sub/deeper/c.txt"} <= trashed
    assert len(json.loads(shared_up.cli("ls", "-r", "rmme-not", "--json").stdout)["entries"]) == 3
    assert shared_up.cli("undelete", "rmme/sub/b.txt").returncode == 0


def test_put_r_follows_symlinked_folders_and_skips_loops(shared_up, tmp_path):
    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "deep" / "o.txt").write_text("outside")
    tree = tmp_path / "tree"
    (tree / "real" / "inner").mkdir(parents=True)
    (tree / "real" / "r.txt").write_text("real")
    (tree / "real" / "inner" / "i.txt").write_text("inner")
    (tree / "linked").symlink_to(outside)  # followed: its files are copied under linked/
    (tree / "alias").symlink_to("real")  # the same folder as real/: skipped, one warning
    (tree / "real" / "inner" / "loop").symlink_to("../..")  # a loop back to the top: skipped
    (outside / "back").symlink_to(outside)  # a loop inside the followed folder: skipped
    (tree / "file-link.txt").symlink_to("real/r.txt")  # a symlinked file: its content is copied
    (tree / "broken").symlink_to("nowhere")
    os.mkfifo(tree / "fifo")  # would block a read forever: skipped
    r = shared_up.cli("put", "-r", str(tree), "links")
    assert r.returncode == 0, r.stderr
    listed = {e["path"] for e in json.loads(shared_up.cli("ls", "-r", "links", "--json").stdout)["entries"]}
    assert listed == {"links/real/r.txt", "links/real/inner/i.txt", "links/linked/deep/o.txt", "links/file-link.txt"}
    warnings = r.stderr.decode().splitlines()
    assert all(w.startswith("warning: skipped ") for w in warnings) and len(warnings) == 5, warnings
    for name in ("alias", "loop", "back", "broken", "fifo"):
        assert sum(f"/{name}" in w for w in warnings) == 1, (name, warnings)
    assert shared_up.cli("get", "links/linked/deep/o.txt", "-").stdout == b"outside"


def _run_on_a_terminal(args: list[str], cwd: Path) -> tuple[int, str]:
    """Run the CLI with stderr on a pseudo-terminal (so it draws its progress bar); return (status, what
    the terminal showed)."""
    master, slave = pty.openpty()
    shown = bytearray()

    def read() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            shown.extend(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    proc = subprocess.run([sys.executable, "-m", "user_app.client.cli", *args], stdout=subprocess.DEVNULL,
                          stderr=slave, cwd=cwd, env={**USER_ENV, "COLUMNS": "160"}, timeout=120)
    os.close(slave)
    reader.join(10)
    os.close(master)
    return proc.returncode, shown.decode(errors="replace")


def test_tree_progress_bar_knows_files_and_bytes_up_front(shared_up, tmp_path):
    tree = tmp_path / "p"
    tree.mkdir()
    for i in range(12):
        (tree / f"f{i}.bin").write_bytes(b"z" * 10_000)
    code, shown = _run_on_a_terminal(["put", "-r", str(tree), "progress", "--url", shared_up.url], shared_up.folder)
    assert code == 0, shown
    # The bar shows both totals from its first frame: "0/12 files", "0.0/117.2 KiB" (120,000 bytes).
    assert re.search(r"\d+/12 files", shown) and re.search(r"[\d.]+/117\.2 KiB", shown), shown
    assert "put: 12 files, 117.2 KiB" in shown
    code, shown = _run_on_a_terminal(["get", "-r", "progress", str(tmp_path / "back"), "--url", shared_up.url],
                                     shared_up.folder)
    assert code == 0 and re.search(r"\d+/12 files", shown) and re.search(r"[\d.]+/117\.2 KiB", shown), shown


def test_fsck_prints_a_summary_then_at_most_20_rows(make_cluster):
    cluster = make_cluster(chunk_servers=3)
    with Client(cluster.url) as c:
        c.put_many([(f"many/f{i:02d}.bin", os.urandom(3000)) for i in range(25)])
    cluster.servers[0].kill()  # every chunk now has 2 of 3 copies
    test_env = dict(os.environ)  # the suite's cluster: its root key is in RINGFS_ACCESS_KEY/SECRET_KEY
    wait_until(lambda: ringfs("fsck", url=cluster.url, env=test_env).returncode == 1, 30, 0.5, "under-replication")
    r = ringfs("fsck", url=cluster.url, env=test_env, columns=40)
    lines = r.stdout.decode().splitlines()
    assert lines[0].startswith("fsck PROBLEMS: 25 files") and "25 files with problems" in lines[1], lines
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["path", "version"])
    rows = [line for line in lines if line.startswith("many/")]
    assert header > 1 and len(rows) == 20
    assert lines[-1] == "... and 5 more files with problems (ringfs fsck --all lists them)"
    every = ringfs("fsck", "--all", url=cluster.url, env=test_env).stdout.decode().splitlines()
    assert len([line for line in every if line.startswith("many/")]) == 25 and not every[-1].startswith("...")
