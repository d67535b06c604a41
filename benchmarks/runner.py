"""The measuring part shared by ``python -m benchmarks`` and ``python -m benchmarks.compare``: the workloads'
repetition loop on a started cluster, then the cluster's stop."""

from __future__ import annotations

import traceback
import uuid
from pathlib import Path

from benchmarks.workloads import Bench, log


def measure(cluster, pairs: list[tuple[str, str, dict]], funcs: dict, args, workdir: Path, out: dict,
            what: str = "services") -> Bench:
    """``run_pairs`` on ``cluster`` (``args.selected``, ``args.repeat``, ``args.files``, ``args.large_mib``;
    client files under ``workdir``) into ``out["results"]``, then stop the cluster, also if that raised. Services
    found not running at the end are listed in ``out["dead_services"]`` (and logged, as ``what``). Returns the
    ``Bench`` with the CPU and memory figures."""
    bench = Bench(cluster=cluster, files=args.files, large_mib=args.large_mib, workdir=workdir,
                  run_id=uuid.uuid4().hex[:8])
    try:
        out["results"] = run_pairs(bench, pairs, funcs, args.selected, args.repeat)
        bench.sample_memory()
    finally:
        dead = stop_cluster(cluster)
        if dead:
            out["dead_services"] = dead
            log(f"WARNING: {what} not running at the end: {dead}")
    return bench


def run_pairs(bench, pairs: list[tuple[str, str, dict]], funcs: dict, selected: list[str], repeat: int) -> dict:
    """Per ``(write, read, kwargs)`` pair with either name in ``selected``: ``repeat`` times the write, then the
    read (``funcs[write]`` is ``(write function, read function)``, both called with ``**kwargs``). A read
    selected alone still needs its write: it runs, but is not reported.

    Returns ``{workload: {"reps": [figures per repetition], "error": None or "Class: message"}}`` for the
    selected workloads. A failed write stops its pair (its read gets ``"skipped: <write> failed"``); a failed
    read stops its pair's repetitions. Exceptions are recorded, never raised.
    """
    results: dict[str, dict] = {}
    for write, read, kw in pairs:
        want_w, want_r = write in selected, read in selected
        if not (want_w or want_r):
            continue
        fw, fr = funcs[write]
        if want_w:
            results[write] = {"reps": [], "error": None}
        if want_r:
            results[read] = {"reps": [], "error": None}
        for rep in range(repeat):
            log(f"{write} rep {rep + 1}/{repeat}")
            try:
                fig, state = fw(bench, rep, **kw)
            except Exception as exc:  # noqa: BLE001
                msg = f"{exc.__class__.__name__}: {exc}"
                log(f"{write} FAILED: {msg}\n{traceback.format_exc()}")
                for name in (write, read):
                    if name in results:
                        results[name]["error"] = msg if name == write else f"skipped: {write} failed"
                break
            if want_w:
                results[write]["reps"].append(fig)
                log(f"  {fig}")
            if want_r:
                log(f"{read} rep {rep + 1}/{repeat}")
                try:
                    fig = fr(bench, rep, state, **kw)
                    results[read]["reps"].append(fig)
                    log(f"  {fig}")
                except Exception as exc:  # noqa: BLE001
                    msg = f"{exc.__class__.__name__}: {exc}"
                    log(f"{read} FAILED: {msg}\n{traceback.format_exc()}")
                    results[read]["error"] = msg
                    break
            state = None
    return results


def stop_cluster(cluster) -> list[str]:
    """Stop every service of ``cluster``; returns the names of those that were no longer running before."""
    dead = [s.name for s in cluster.services() if not s.alive]
    cluster.stop()
    return dead
