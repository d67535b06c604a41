"""A local MooseFS cluster for ``benchmarks.compare``: 1 master, 3 chunk servers, 1 FUSE client mount.

Debian packages: ``apt-get install -y moosefs-master moosefs-chunkserver moosefs-client`` (needs
``/dev/fuse``). Every process listens on 127.0.0.1 only, runs in the foreground (``-f``) with its own config
file under the data dir, and the mount root gets goal 3 (``mfssetgoal -r 3``: 3 copies of every chunk,
like RingFS's replication factor 3).

MooseFS has no HTTP API, so the workloads here are RingFS's workloads done with plain file I/O on the mount:
a "PUT" is ``open(path, "wb") / write / close`` (MooseFS sends the data to the chunk servers by ``close``), a
"GET" is ``open / read / close``; same files, sizes, path layout, process count, timing and verification as
``benchmarks.workloads``. The mount process (``mfsmount``) plays the part of RingFS's user app: it is
unmounted and mounted again before every read phase (and the page cache dropped), so reads are cold.
The parent directories of the small files are created before the timed loop (10 per 1000 files).
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks import workloads as w
from shared.local_cluster import free_port, wait_until

READY_TIMEOUT = 60.0


def mfs_version() -> str:
    out = subprocess.run(["mfsmaster", "-v"], capture_output=True, text=True, timeout=30).stdout.strip()
    return f"MooseFS {out}"


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class MfsService:
    name: str
    cmd: list[str]
    workdir: Path
    port: int | None = None  # listening port to wait for (None: no port)
    mountpoint: Path | None = None  # for the client: wait for / tear down the mount
    proc: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, wait: bool = True) -> "MfsService":
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.cmd, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log.close()
        if wait:
            def ready() -> bool:
                if self.proc.poll() is not None:
                    lines = self.log_path.read_text(errors="replace").splitlines()
                    why = [ln for ln in lines if not ln.startswith("mfs") and
                           any(k in ln for k in ("can't", "failed", "error"))] or lines[-3:]
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {' / '.join(why)}")
                if self.mountpoint is not None:
                    return os.path.ismount(self.mountpoint)
                return _listening(self.port) if self.port else True
            wait_until(ready, READY_TIMEOUT, interval=0.1, what=f"{self.name}")
        return self

    def stop(self, timeout: float = 20.0) -> None:
        if self.mountpoint is not None and os.path.ismount(self.mountpoint):
            r = subprocess.run(["umount", str(self.mountpoint)], capture_output=True, text=True)
            if r.returncode != 0:
                subprocess.run(["umount", "-l", str(self.mountpoint)], capture_output=True)
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        self.proc = None


class MfsCluster:
    def __init__(self, data_dir: Path, chunk_servers: int = 3, goal: int = 3) -> None:
        self.data_dir = Path(data_dir)
        self.goal = goal
        d = self.data_dir / "master"
        d.mkdir(parents=True, exist_ok=True)
        ml, mcs, mcl = free_port(), free_port(), free_port()
        (d / "metadata.mfs").write_bytes(Path("/var/lib/mfs/metadata.mfs.empty").read_bytes())
        (d / "mfsexports.cfg").write_text("127.0.0.1 / rw,alldirs,maproot=0\n")
        (d / "mfsmaster.cfg").write_text(
            f"DATA_PATH = {d}\nEXPORTS_FILENAME = {d / 'mfsexports.cfg'}\nWORKING_USER = root\nWORKING_GROUP = root\n"
            f"MATOML_LISTEN_HOST = 127.0.0.1\nMATOML_LISTEN_PORT = {ml}\n"
            f"MATOCS_LISTEN_HOST = 127.0.0.1\nMATOCS_LISTEN_PORT = {mcs}\n"
            f"MATOCL_LISTEN_HOST = 127.0.0.1\nMATOCL_LISTEN_PORT = {mcl}\n")
        self.master = MfsService("mfs_master", ["mfsmaster", "-f", "-c", str(d / "mfsmaster.cfg"), "start"],
                                 d, port=mcl)
        self.chunk_servers = []
        for i in range(1, chunk_servers + 1):
            cd = self.data_dir / f"cs{i}"
            (cd / "hdd").mkdir(parents=True, exist_ok=True)
            (cd / "mfshdd.cfg").write_text(f"{cd / 'hdd'}\n")
            p = free_port()
            (cd / "mfschunkserver.cfg").write_text(
                f"DATA_PATH = {cd}\nHDD_CONF_FILENAME = {cd / 'mfshdd.cfg'}\nWORKING_USER = root\n"
                f"WORKING_GROUP = root\nMASTER_HOST = 127.0.0.1\nMASTER_PORT = {mcs}\nBIND_HOST = 127.0.0.1\n"
                f"CSSERV_LISTEN_HOST = 127.0.0.1\nCSSERV_LISTEN_PORT = {p}\n")
            self.chunk_servers.append(MfsService(
                f"mfs_chunkserver_{i}", ["mfschunkserver", "-f", "-c", str(cd / "mfschunkserver.cfg"), "start"],
                cd, port=p))
        self.mnt = self.data_dir / "mnt"
        self.mnt.mkdir(parents=True, exist_ok=True)
        self.client = MfsService("mfsmount", ["mfsmount", str(self.mnt), "-f", "-H", "127.0.0.1", "-P", str(mcl)],
                                 self.data_dir / "client", mountpoint=self.mnt)
        self.apps = [self.client]

    @property
    def url(self) -> str:  # Bench.url: here, the mount point
        return str(self.mnt)

    def services(self) -> list[MfsService]:
        return [self.master, *self.chunk_servers, self.client]

    def _copies(self, path: Path) -> int:
        out = subprocess.run(["mfsfileinfo", str(path)], capture_output=True, text=True).stdout
        return len(re.findall(r"copy \d+:", out))

    def start(self) -> "MfsCluster":
        try:
            self.master.start()
            for cs in self.chunk_servers:
                cs.start()

            def connected() -> bool:  # every chunk server has connected to the master, or say why not
                for cs in self.chunk_servers:
                    if cs.proc.poll() is not None:
                        why = [ln for ln in cs.log_path.read_text(errors="replace").splitlines()
                               if "master connection module" in ln and not ln.startswith("mfschunkserver[")]
                        raise RuntimeError(f"{cs.name} exited with {cs.proc.returncode}: {' / '.join(why)}")
                return all("connected to master" in cs.log_path.read_text(errors="replace").lower()
                           for cs in self.chunk_servers)

            wait_until(connected, READY_TIMEOUT, interval=0.1, what="chunk servers connected to the master")
            self.client.start()
            r = subprocess.run(["mfssetgoal", "-r", str(self.goal), str(self.mnt)], capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"mfssetgoal failed: {r.stderr or r.stdout}")
            # wait until a freshly written file gets all its copies, i.e. every chunk server has registered
            n = [0]

            def full() -> bool:
                n[0] += 1
                p = self.mnt / f"probe{n[0]}.bin"
                p.write_bytes(b"x" * 100)
                return self._copies(p) >= self.goal

            wait_until(full, READY_TIMEOUT, interval=0.5, what=f"{self.goal} copies of a probe file")
            for p in self.mnt.glob("probe*.bin"):
                p.unlink()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for s in reversed(self.services()):
            s.stop()


# ------------------------------------------------------------------ workloads as file I/O on the mount

def _mkparents(root: str, paths: list[str]) -> None:
    for d in sorted({os.path.dirname(p) for p in paths}):
        os.makedirs(os.path.join(root, d), exist_ok=True)


def _write(root: str, p: str, d: bytes) -> None:
    with open(os.path.join(root, p), "wb") as f:
        f.write(d)


def _read(root: str, p: str) -> bytes:
    with open(os.path.join(root, p), "rb") as f:
        return f.read()


def small_write(b: w.Bench, rep: int) -> tuple[dict, dict]:
    paths = b.paths("small", rep)
    data = [os.urandom(w.FILE_SIZE) for _ in paths]
    _mkparents(b.url, paths)
    lat = []
    with b.phase("small_write"):
        t0 = time.perf_counter()
        for p, d in zip(paths, data):
            s = time.perf_counter()
            _write(b.url, p, d)
            lat.append(time.perf_counter() - s)
        secs = time.perf_counter() - t0
    return ({"files_per_s": len(paths) / secs, "p50_ms": w.percentile(lat, 50) * 1e3,
             "p99_ms": w.percentile(lat, 99) * 1e3, "seconds": secs}, {"paths": paths, "data": data})


def small_read(b: w.Bench, rep: int, state: dict) -> dict:
    paths, data = state["paths"], state["data"]
    b.before_read()
    lat, bad = [], 0
    with b.phase("small_read"):
        t0 = time.perf_counter()
        for p, d in zip(paths, data):
            s = time.perf_counter()
            got = _read(b.url, p)
            lat.append(time.perf_counter() - s)
            bad += got != d
        secs = time.perf_counter() - t0
    if bad:
        raise RuntimeError(f"small_read: {bad} of {len(paths)} files differ from what was written")
    return {"files_per_s": len(paths) / secs, "p50_ms": w.percentile(lat, 50) * 1e3,
            "p99_ms": w.percentile(lat, 99) * 1e3, "seconds": secs}


def _par_worker(mode: str, root: str, paths: list[str], expected, barrier, queue) -> None:
    try:
        data = [os.urandom(w.FILE_SIZE) for _ in paths] if mode == "write" else None
        hashes, bad = [], 0
        barrier.wait(60)
        t0 = time.monotonic()
        if mode == "write":
            for p, d in zip(paths, data):
                _write(root, p, d)
            t1 = time.monotonic()
            hashes = [hashlib.sha256(d).hexdigest() for d in data]
        else:
            got = [_read(root, p) for p in paths]
            t1 = time.monotonic()
            bad = sum(hashlib.sha256(g).hexdigest() != e for g, e in zip(got, expected))
        queue.put({"t0": t0, "t1": t1, "paths": paths, "hashes": hashes, "bad": bad, "error": None})
    except BaseException as exc:  # noqa: BLE001
        try:
            barrier.abort()
        except Exception:
            pass
        queue.put({"error": f"{exc.__class__.__name__}: {exc}"})


def _run_par(b: w.Bench, phase: str, mode: str, paths: list[str], expected) -> tuple[float, list]:
    ctx = mp.get_context("fork")
    barrier, queue = ctx.Barrier(w.CLIENT_PROCS), ctx.Queue()
    slices = [list(range(i, len(paths), w.CLIENT_PROCS)) for i in range(w.CLIENT_PROCS)]
    with b.phase(phase):
        procs = [ctx.Process(target=_par_worker, args=(mode, b.url, [paths[j] for j in s],
                                                         [expected[j] for j in s] if expected else None,
                                                         barrier, queue)) for s in slices]
        for p in procs:
            p.start()
        results = [queue.get(timeout=3600) for _ in procs]
        for p in procs:
            p.join()
    errors = [r["error"] for r in results if r.get("error")]
    if errors:
        raise RuntimeError(f"{phase}: {len(errors)} client process(es) failed: {errors[0]}")
    return max(r["t1"] for r in results) - min(r["t0"] for r in results), results


def par_write(b: w.Bench, rep: int) -> tuple[dict, dict]:
    paths = b.paths("par", rep)
    _mkparents(b.url, paths)
    secs, results = _run_par(b, "par_write", "write", paths, None)
    expected = {}
    for r in results:
        expected.update(zip(r["paths"], r["hashes"]))
    return {"files_per_s": len(paths) / secs, "seconds": secs}, {"paths": paths, "expected": expected}


def par_read(b: w.Bench, rep: int, state: dict) -> dict:
    paths = state["paths"]
    b.before_read()
    secs, results = _run_par(b, "par_read", "read", paths, [state["expected"][p] for p in paths])
    bad = sum(r["bad"] for r in results)
    if bad:
        raise RuntimeError(f"par_read: {bad} of {len(paths)} files differ from what was written")
    return {"files_per_s": len(paths) / secs, "seconds": secs}


def large_write(b: w.Bench, rep: int) -> tuple[dict, dict]:
    path = f"bench/{b.run_id}/large_write/r{rep}.bin"
    full = os.path.join(b.url, path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    size = b.large_mib * 1024 * 1024
    h = hashlib.sha256()
    with b.phase("large_write"):
        t0 = time.perf_counter()
        with open(full, "wb", buffering=0) as f:
            for block in w._random_blocks(size, rep * 7919, h):
                f.write(block)
        secs = time.perf_counter() - t0
    got = os.stat(full).st_size
    if got != size:
        raise RuntimeError(f"large_write: file has {got} bytes, wrote {size}")
    return {"mb_per_s": size / secs / 1e6, "seconds": secs}, {"path": path, "size": size, "sha256": h.hexdigest()}


def large_read(b: w.Bench, rep: int, state: dict) -> dict:
    b.before_read()
    with b.phase("large_read"):
        t0 = time.perf_counter()
        h, n = hashlib.sha256(), 0
        buf = bytearray(w.BLOCK)
        view = memoryview(buf)
        with open(os.path.join(b.url, state["path"]), "rb", buffering=0) as f:
            while True:
                got = f.readinto(view)
                if not got:
                    break
                h.update(view[:got])
                n += got
        secs = time.perf_counter() - t0
    if n != state["size"] or h.hexdigest() != state["sha256"]:
        raise RuntimeError(f"large_read: read {n} bytes sha256 {h.hexdigest()}, wrote {state['size']} bytes")
    return {"mb_per_s": n / secs / 1e6, "seconds": secs}


FUNCS = {"small_write": (small_write, small_read), "par_write": (par_write, par_read),
         "large_write": (large_write, large_read)}
