"""How other processes talk to a running ``ringfs up``: its PID file and its request files.

``ringfs up`` writes its PID to ``<data dir>/ringfs-up.pid`` (removed when it stops) and looks into
``<data dir>/requests/`` every 0.2 s. ``ringfs server add`` leaves ``<id>.req`` there (JSON, written to a
temp file and renamed, so it is never read half-written) and waits for ``<id>.result``, which the supervisor
writes once the request is done or has failed. Files rather than a signal: several requests at once each
get their own answer, and a stale PID file can never make us signal an unrelated process.

Also the small process facts the supervisor reports: whether a port is taken, how a child exited, the last
line of its log.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import time
import uuid
from pathlib import Path

PID_FILE = "ringfs-up.pid"
REQUESTS_DIR = "requests"


def port_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be served (``"is in use"``, or the bind error), or None when it can.
    ``SO_REUSEADDR`` as uvicorn binds: a port only in TIME_WAIT (a child that just died) is free, a
    listener or a plain bound socket is not."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            return "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc.strerror or exc})"
    return None


def describe_exit(code: int | None) -> str:
    if code is None:
        return "running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def last_log_line(path: Path, limit: int = 300) -> str:
    """The last non-empty line of a log (its tail only), shortened to ``limit`` characters."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:limit] if lines else ""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_pid(data_dir: Path) -> int | None:
    try:
        return int((Path(data_dir) / PID_FILE).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def is_ringfs_up(pid: int) -> bool:
    """Whether ``pid`` is a live ``ringfs up`` (best effort: a live PID whose command line, where /proc shows
    it, has the argument ``up``)."""
    if not pid_alive(pid):
        return False
    try:
        return b"up" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True


def claim(data_dir: Path) -> str | None:
    """Make ``data_dir`` ours: write our PID, clear old requests. Returns why not (another ``ringfs up``
    runs there) or None."""
    data_dir.mkdir(parents=True, exist_ok=True)
    other = read_pid(data_dir)
    if other is not None and other != os.getpid() and is_ringfs_up(other):
        return f"another ringfs up (pid {other}) runs with data dir {data_dir}; stop it first (or use another --data-dir)"
    (data_dir / PID_FILE).write_text(f"{os.getpid()}\n")
    requests = data_dir / REQUESTS_DIR
    requests.mkdir(exist_ok=True)
    for stale in requests.iterdir():  # requests and answers of an earlier run
        stale.unlink(missing_ok=True)
    return None


def release(data_dir: Path) -> None:
    if read_pid(data_dir) == os.getpid():
        (data_dir / PID_FILE).unlink(missing_ok=True)


def take_requests(data_dir: Path) -> list[tuple[str, dict]]:
    """The waiting requests as ``(id, body)``, oldest name first, each removed as it is taken."""
    try:
        files = sorted((data_dir / REQUESTS_DIR).glob("*.req"))
    except OSError:
        return []
    taken = []
    for f in files:
        try:
            body = json.loads(f.read_text())
        except (OSError, ValueError):
            body = {}
        f.unlink(missing_ok=True)
        taken.append((f.stem, body if isinstance(body, dict) else {}))
    return taken


def answer(data_dir: Path, request_id: str, result: dict) -> None:
    path = data_dir / REQUESTS_DIR / f"{request_id}.result"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, path)


def request(data_dir: Path, body: dict, timeout: float) -> dict:
    """Send ``body`` to the ``ringfs up`` of ``data_dir`` and wait for its answer. Raises ``RuntimeError``
    with a one-line reason (none runs there, it stopped, it did not answer, or the answer's ``error``)."""
    data_dir = Path(data_dir).resolve()
    pid = read_pid(data_dir)
    if pid is None:
        raise RuntimeError(f"no ringfs up runs with data dir {data_dir} (no {data_dir / PID_FILE}); "
                           f"start one with `ringfs up --data-dir {data_dir}`")
    if not pid_alive(pid):
        raise RuntimeError(f"the ringfs up of {data_dir} (pid {pid}) is not running any more")
    request_id = uuid.uuid4().hex
    requests = data_dir / REQUESTS_DIR
    tmp = requests / f"{request_id}.tmp"
    tmp.write_text(json.dumps(body))
    os.replace(tmp, requests / f"{request_id}.req")
    result_file = requests / f"{request_id}.result"
    deadline = time.monotonic() + timeout
    while not result_file.exists():
        if not pid_alive(pid):
            raise RuntimeError(f"ringfs up (pid {pid}) stopped before it answered")
        if time.monotonic() > deadline:
            (requests / f"{request_id}.req").unlink(missing_ok=True)
            raise RuntimeError(f"ringfs up (pid {pid}) did not answer within {timeout:.0f} s")
        time.sleep(0.1)
    result = json.loads(result_file.read_text())
    result_file.unlink(missing_ok=True)
    if not result.get("ok"):
        raise RuntimeError(result.get("error") or "ringfs up could not do it")
    return result


def request_add_chunk_server(data_dir: Path, port: int = 0, timeout: float = 90.0) -> dict:
    """One more chunk server from the ``ringfs up`` of ``data_dir``, answered once it is healthy on the
    ring: ``{"name","url","pid","log","healthy"}`` (``healthy``: how many chunk servers are)."""
    return request(data_dir, {"kind": "add_chunk_server", "port": port}, timeout)
