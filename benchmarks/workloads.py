"""The workloads. Each run function does one repetition and returns a dict of raw figures (a write also
returns the state its read needs: ``write(bench, rep, **kw) -> (figures, state)``,
``read(bench, rep, state, **kw) -> figures``). ``PAIRS`` and ``FUNCS`` say which read goes with which write."""

from __future__ import annotations

import hashlib
import math
import multiprocessing as mp
import os
import random
import shutil
import subprocess
import sys
import time
from typing import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import cluster as cl
from benchmarks.httpclient import Conn

REPO = Path(__file__).resolve().parents[1]
FILE_SIZE = 10 * 1024
CLIENT_PROCS = 8
BLOCK = 1 << 20


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[max(0, math.ceil(q / 100 * len(s)) - 1)]


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Bench:
    """The running cluster plus everything measured about it."""

    cluster: object
    files: int
    large_mib: int
    workdir: Path
    run_id: str
    cache_drop: str = ""
    # service name -> peak (sum over its process tree of VmHWM), MiB, over the whole run
    peak_rss: dict[str, float] = field(default_factory=dict)
    peak_rss_single: dict[str, float] = field(default_factory=dict)
    # phase -> rep list of {service or "client": cpu seconds}
    cpu: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    # phase -> rep list of the user app's VmHWM at the end of the phase (it was restarted before reads)
    app_hwm: dict[str, list[float]] = field(default_factory=dict)
    # phase -> (operations in one repetition, their unit: "file" or "MiB"), for CPU per operation
    ops: dict[str, tuple[float, str]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.cluster.url

    def sample_memory(self) -> None:
        for svc in self.cluster.services():
            total, single = cl.service_hwm_mib(svc)
            self.peak_rss[svc.name] = max(self.peak_rss.get(svc.name, 0.0), total)
            self.peak_rss_single[svc.name] = max(self.peak_rss_single.get(svc.name, 0.0), single)

    def cpu_snapshot(self) -> dict[str, float]:
        snap = {svc.name: cl.service_cpu_seconds(svc) for svc in self.cluster.services()}
        snap["client"] = cl.client_cpu_seconds()
        return snap

    def before_read(self) -> None:
        """Cold-ish reads: restart the user app, sync, drop the page cache where permitted."""
        self.sample_memory()  # keep the user app's peak before its restart resets VmHWM
        cl.restart_user_app(self.cluster)
        self.cache_drop = cl.drop_caches()

    @contextmanager
    def phase(self, name: str, ops: float, unit: str = "file"):
        """Measure one repetition of phase ``name``: CPU seconds of every service and of the client, and
        the user app's VmHWM. ``ops`` operations of ``unit`` ("file" or "MiB") are done inside it; the
        report divides the CPU by them (CPU per operation is steadier than throughput on a shared box)."""
        self.ops[name] = (ops, unit)
        before = self.cpu_snapshot()
        yield
        after = self.cpu_snapshot()
        self.cpu.setdefault(name, []).append({k: round(after[k] - before.get(k, 0.0), 3) for k in after})
        self.sample_memory()
        app = self.cluster.apps[0]
        self.app_hwm.setdefault(name, []).append(round(cl.service_hwm_mib(app)[0], 1))

    def paths(self, kind: str, rep: int) -> list[str]:
        return [f"bench/{self.run_id}/{kind}/r{rep}/d{i // 100:03d}/f{i:05d}.bin" for i in range(self.files)]


# ------------------------------------------------------------------ small files, one client

def small_write(b: Bench, rep: int) -> tuple[dict, dict]:
    paths = b.paths("small", rep)
    data = [os.urandom(FILE_SIZE) for _ in paths]
    lat = []
    with Conn(b.url) as c, b.phase("small_write", len(paths)):
        t0 = time.perf_counter()
        for p, d in zip(paths, data):
            s = time.perf_counter()
            c.put(p, d)
            lat.append(time.perf_counter() - s)
        secs = time.perf_counter() - t0
    fig = {"files_per_s": len(paths) / secs, "p50_ms": percentile(lat, 50) * 1e3,
           "p99_ms": percentile(lat, 99) * 1e3, "seconds": secs, "reconnects": c.reconnects}
    return fig, {"paths": paths, "data": data}


def small_read(b: Bench, rep: int, state: dict) -> dict:
    paths, data = state["paths"], state["data"]
    b.before_read()
    lat = []
    bad = 0
    with Conn(b.url) as c, b.phase("small_read", len(paths)):
        t0 = time.perf_counter()
        for p, d in zip(paths, data):
            s = time.perf_counter()
            got = c.get(p)
            lat.append(time.perf_counter() - s)
            bad += got != d
        secs = time.perf_counter() - t0
    if bad:
        raise RuntimeError(f"small_read: {bad} of {len(paths)} files differ from what was written")
    return {"files_per_s": len(paths) / secs, "p50_ms": percentile(lat, 50) * 1e3,
            "p99_ms": percentile(lat, 99) * 1e3, "seconds": secs, "reconnects": c.reconnects}


# ------------------------------------------------------------------ small files, 8 client processes

def _par_worker(mode: str, url: str, paths: list[str], expected: list[str] | None, barrier, queue) -> None:
    try:
        data = [os.urandom(FILE_SIZE) for _ in paths] if mode == "write" else None
        hashes, bad = [], 0
        with Conn(url) as c:
            barrier.wait(60)
            t0 = time.monotonic()
            if mode == "write":
                for p, d in zip(paths, data):
                    c.put(p, d)
                t1 = time.monotonic()
                hashes = [hashlib.sha256(d).hexdigest() for d in data]
            else:
                got = [c.get(p) for p in paths]
                t1 = time.monotonic()
                bad = sum(hashlib.sha256(g).hexdigest() != e for g, e in zip(got, expected))
        queue.put({"t0": t0, "t1": t1, "paths": paths, "hashes": hashes, "bad": bad, "error": None})
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        try:
            barrier.abort()
        except Exception:
            pass
        queue.put({"error": f"{exc.__class__.__name__}: {exc}"})


def _run_par(b: Bench, phase: str, mode: str, paths: list[str], expected: list[str] | None) -> tuple[float, list]:
    ctx = mp.get_context("fork")
    barrier, queue = ctx.Barrier(CLIENT_PROCS), ctx.Queue()
    slices = [list(range(i, len(paths), CLIENT_PROCS)) for i in range(CLIENT_PROCS)]
    with b.phase(phase, len(paths)):
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
    secs = max(r["t1"] for r in results) - min(r["t0"] for r in results)
    return secs, results


def par_write(b: Bench, rep: int) -> tuple[dict, dict]:
    paths = b.paths("par", rep)
    secs, results = _run_par(b, "par_write", "write", paths, None)
    expected = {}
    for r in results:
        expected.update(zip(r["paths"], r["hashes"]))
    return {"files_per_s": len(paths) / secs, "seconds": secs}, {"paths": paths, "expected": expected}


def par_read(b: Bench, rep: int, state: dict) -> dict:
    paths = state["paths"]
    b.before_read()
    secs, results = _run_par(b, "par_read", "read", paths, [state["expected"][p] for p in paths])
    bad = sum(r["bad"] for r in results)
    if bad:
        raise RuntimeError(f"par_read: {bad} of {len(paths)} files differ from what was written")
    return {"files_per_s": len(paths) / secs, "seconds": secs}


# ------------------------------------------------------------------ trees through the CLI

def _cli(args: list[str]) -> float:
    cmd = [sys.executable, "-m", "user_app.client.cli", *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    secs = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[1:])} exited {proc.returncode}: "
                           f"{(proc.stderr or proc.stdout).strip()[-500:]}")
    return secs


def tree_put(b: Bench, rep: int) -> tuple[dict, dict]:
    local = b.workdir / f"tree_src_r{rep}"
    shutil.rmtree(local, ignore_errors=True)
    for i in range(b.files):
        p = local / f"d{i // 100:03d}" / f"f{i:05d}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(os.urandom(FILE_SIZE))
    remote = f"bench/{b.run_id}/tree/r{rep}"
    with b.phase("tree_put", b.files):
        secs = _cli(["put", "-r", str(local), remote, "--url", b.url])
    return {"files_per_s": b.files / secs, "seconds": secs}, {"local": local, "remote": remote}


def tree_get(b: Bench, rep: int, state: dict) -> dict:
    src, remote = state["local"], state["remote"]
    dst = b.workdir / f"tree_dst_r{rep}"
    shutil.rmtree(dst, ignore_errors=True)
    b.before_read()
    with b.phase("tree_get", b.files):
        secs = _cli(["get", "-r", remote, str(dst), "--url", b.url])
    want = sorted(p.relative_to(src) for p in src.rglob("*") if p.is_file())
    have = sorted(p.relative_to(dst) for p in dst.rglob("*") if p.is_file())
    if want != have:
        raise RuntimeError(f"tree_get: {len(have)} files downloaded, {len(want)} expected "
                           f"(missing e.g. {sorted(set(want) - set(have))[:3]}, "
                           f"extra e.g. {sorted(set(have) - set(want))[:3]})")
    diff = [r for r in want if (src / r).read_bytes() != (dst / r).read_bytes()]
    if diff:
        raise RuntimeError(f"tree_get: {len(diff)} files are not byte-identical, e.g. {diff[:3]}")
    shutil.rmtree(src, ignore_errors=True)
    shutil.rmtree(dst, ignore_errors=True)
    return {"files_per_s": b.files / secs, "seconds": secs}


# ------------------------------------------------------------------ one large file, streamed

def _random_blocks(total: int, seed: int, h) -> Iterator[bytes]:
    rng = random.Random(seed)
    sent = 0
    while sent < total:
        block = rng.randbytes(min(BLOCK, total - sent))
        h.update(block)
        sent += len(block)
        yield block


def large_write(b: Bench, rep: int, chunk_size: int | None = None) -> tuple[dict, dict]:
    name = "large_write" if chunk_size is None else f"large_write_{chunk_size // 1024}k"
    path = f"bench/{b.run_id}/{name}/r{rep}.bin"
    size = b.large_mib * 1024 * 1024
    h = hashlib.sha256()
    query = f"chunk_size={chunk_size}" if chunk_size else ""
    with Conn(b.url) as c, b.phase(name, b.large_mib, "MiB"):
        t0 = time.perf_counter()
        body = c.put_stream(path, _random_blocks(size, rep * 7919 + (chunk_size or 0), h), size, query)
        secs = time.perf_counter() - t0
    import json
    meta = json.loads(body)
    if meta.get("size") != size or meta.get("sha256") != h.hexdigest():
        raise RuntimeError(f"{name}: server answered size={meta.get('size')} sha256={meta.get('sha256')}, "
                           f"sent size={size} sha256={h.hexdigest()}")
    return ({"mb_per_s": size / secs / 1e6, "seconds": secs, "chunks": meta.get("chunks")},
            {"path": path, "size": size, "sha256": h.hexdigest()})


def large_read(b: Bench, rep: int, state: dict, chunk_size: int | None = None) -> dict:
    name = "large_read" if chunk_size is None else f"large_read_{chunk_size // 1024}k"
    b.before_read()
    with Conn(b.url) as c, b.phase(name, b.large_mib, "MiB"):
        t0 = time.perf_counter()
        n, digest = c.get_stream_sha256(state["path"])
        secs = time.perf_counter() - t0
    if n != state["size"] or digest != state["sha256"]:
        raise RuntimeError(f"{name}: read {n} bytes sha256 {digest}, "
                           f"wrote {state['size']} bytes sha256 {state['sha256']}")
    return {"mb_per_s": n / secs / 1e6, "seconds": secs}


# ------------------------------------------------------------------ which read goes with which write

# (write, read, extra kwargs for both): a read needs its write's data, so the write runs (untimed for the
# report) even when only the read is selected.
PAIRS = [
    ("small_write", "small_read", {}),
    ("par_write", "par_read", {}),
    ("tree_put", "tree_get", {}),
    ("large_write", "large_read", {}),
    ("large_write_64k", "large_read_64k", {"chunk_size": 65536}),
    ("large_write_1k", "large_read_1k", {"chunk_size": 1024}),  # the reference design's 1 KB, forced
]
# write name -> (write function, read function)
FUNCS = {"small_write": (small_write, small_read), "par_write": (par_write, par_read),
         "tree_put": (tree_put, tree_get), "large_write": (large_write, large_read),
         "large_write_64k": (large_write, large_read), "large_write_1k": (large_write, large_read)}
