"""``python -m benchmarks.compare``: RingFS's benchmark workloads against RingFS and SeaweedFS on this
machine, one system after the other in one invocation, printed side by side.

RingFS runs through ``benchmarks.workloads`` unchanged (cluster started by ``benchmarks.cluster`` exactly as
``python -m benchmarks`` does). SeaweedFS (``benchmarks.seaweedfs``) runs the very same workload functions
against its filer's HTTP API (``PUT``/``GET`` by path), except ``large_write``, whose answer check is adapted
(the filer answers ``{"name", "size"}``, not a SHA-256; the SHA-256 is still checked by ``large_read``).
Both go through ``benchmarks.runner``, as ``python -m benchmarks`` does. See docs/benchmark.md, "Side by side".
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from benchmarks import workloads as w
from benchmarks.httpclient import Conn
from benchmarks.runner import measure

WORKLOADS = ["small_write", "small_read", "par_write", "par_read", "large_write", "large_read"]
PAIRS = [pair for pair in w.PAIRS if pair[0] in WORKLOADS]
SYSTEMS = ["ringfs", "seaweedfs"]
TITLES = {"ringfs": "RingFS", "seaweedfs": "SeaweedFS"}
# figure, workload, metric, unit
FIGURES = [
    ("small_write", "small_write", "files_per_s", "files/s"),
    ("small_write p50", "small_write", "p50_ms", "ms"),
    ("small_write p99", "small_write", "p99_ms", "ms"),
    ("small_read", "small_read", "files_per_s", "files/s"),
    ("small_read p50", "small_read", "p50_ms", "ms"),
    ("small_read p99", "small_read", "p99_ms", "ms"),
    ("par_write", "par_write", "files_per_s", "files/s"),
    ("par_read", "par_read", "files_per_s", "files/s"),
    ("large_write", "large_write", "mb_per_s", "MB/s"),
    ("large_read", "large_read", "mb_per_s", "MB/s"),
]


# ------------------------------------------------------------------ SeaweedFS adapter

def weed_large_write(b: w.Bench, rep: int) -> tuple[dict, dict]:
    """``workloads.large_write`` with the filer's answer checked for the size only (it has no SHA-256);
    the content is verified by ``large_read`` against the SHA-256 computed here while sending."""
    path = f"bench/{b.run_id}/large_write/r{rep}.bin"
    size = b.large_mib * 1024 * 1024
    h = hashlib.sha256()
    with Conn(b.url) as c, b.phase("large_write", b.large_mib, "MiB"):
        t0 = time.perf_counter()
        body = c.put_stream(path, w._random_blocks(size, rep * 7919, h), size)
        secs = time.perf_counter() - t0
    meta = json.loads(body)
    if meta.get("size") != size:
        raise RuntimeError(f"large_write: filer answered {meta}, sent size={size}")
    return {"mb_per_s": size / secs / 1e6, "seconds": secs}, {"path": path, "size": size, "sha256": h.hexdigest()}


def _version(system: str) -> str:
    if system == "ringfs":
        git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=w.REPO, capture_output=True,
                             text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=w.REPO,
                               capture_output=True, text=True).stdout.strip()
        return f"git {git}" + (" + uncommitted changes in the tree" if dirty else "")
    try:
        from benchmarks.seaweedfs import weed_version
        return weed_version()
    except Exception as exc:  # noqa: BLE001
        return f"unknown ({exc.__class__.__name__}: {exc})"


def _start(system: str, data_dir: Path):
    """(cluster, workload functions) for one system."""
    if system == "ringfs":
        from benchmarks.cluster import start_cluster
        return start_cluster(data_dir, {}), w.FUNCS
    if system == "seaweedfs":
        from benchmarks import seaweedfs as sw
        for var in ("RINGFS_ACCESS_KEY", "RINGFS_SECRET_KEY"):  # RingFS's root key means nothing to SeaweedFS
            os.environ.pop(var, None)
        return sw.WeedCluster(data_dir).start(), {**w.FUNCS, "large_write": (weed_large_write, w.large_read)}
    raise ValueError(system)


def run_system(system: str, args, tmp: Path) -> dict:
    out = {"version": "", "results": {}, "error": None, "cpu": {}, "peak_rss_mib": {}, "page_cache": ""}
    data_dir, workdir = tmp / system / "data", tmp / system / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    out["version"] = _version(system)
    w.log(f"=== {system} ({out['version']}): starting under {data_dir}")
    try:
        cluster, funcs = _start(system, data_dir)
    except Exception as exc:  # noqa: BLE001
        out["error"] = f"start failed: {exc.__class__.__name__}: {exc}"
        w.log(f"{system} {out['error']}\n{traceback.format_exc()}")
        return out
    bench = measure(cluster, PAIRS, funcs, args, workdir, out, f"{system} services")
    out["cpu"], out["peak_rss_mib"], out["page_cache"] = bench.cpu, bench.peak_rss, bench.cache_drop
    return out


# ------------------------------------------------------------------ report

def _median(r: dict | None, metric: str):
    if not r:
        return None
    samples = [rep[metric] for rep in r["reps"] if metric in rep]
    return statistics.median(samples) if samples else None


def build_rows(doc: dict) -> list[dict]:
    systems = list(doc["systems"])
    rows = []
    for figure, workload, metric, unit in FIGURES:
        if workload not in doc["selected"]:
            continue
        row = {"figure": figure, "unit": unit, "values": {}, "samples": {}, "errors": {}}
        for s in systems:
            sd = doc["systems"][s]
            r = sd["results"].get(workload)
            row["values"][s] = _median(r, metric)
            row["samples"][s] = [rep[metric] for rep in r["reps"] if metric in rep] if r else []
            row["errors"][s] = (r or {}).get("error") or sd.get("error")
        rows.append(row)
    # server-side CPU per phase (all server processes; the client excluded) and peak memory
    for phase in [p for p in WORKLOADS if p in doc["selected"]]:
        row = {"figure": f"server CPU s, {phase}", "unit": "s", "values": {}, "samples": {}, "errors": {}}
        for s in systems:
            reps = doc["systems"][s]["cpu"].get(phase) or []
            if not (doc["systems"][s]["results"].get(phase) or {}).get("reps"):
                reps = []  # the workload failed: no CPU figure either
            row["values"][s] = statistics.median([sum(v for k, v in rep.items() if k != "client")
                                                  for rep in reps]) if reps else None
        rows.append(row)
    row = {"figure": "peak RSS, sum of all server processes", "unit": "MiB", "values": {}, "samples": {},
           "errors": {}}
    for s in systems:
        rss = doc["systems"][s]["peak_rss_mib"]
        row["values"][s] = sum(rss.values()) if rss else None
    rows.append(row)
    return rows


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.1f}" if abs(v) >= 10 else f"{v:.2f}"


def _cell(row: dict, s: str) -> str:
    if row["errors"].get(s) and row["values"].get(s) is None:
        return "ERROR"
    return _fmt(row["values"].get(s))


def markdown(doc: dict, rows: list[dict]) -> str:
    systems = list(doc["systems"])
    lines = ["| figure | " + " | ".join(TITLES[s] for s in systems) + " | unit |",
             "|---|" + "---:|" * len(systems) + "---|"]
    for row in rows:
        lines.append(f"| {row['figure']} | " + " | ".join(_cell(row, s) for s in systems) + f" | {row['unit']} |")
    return "\n".join(lines)


def print_report(doc: dict, rows: list[dict]) -> None:
    """Plain text on purpose (no rich): the report must print even if the shared venv changed mid-run."""
    a = doc["args"]
    print(f"side by side, {doc['date']} .. {doc['finished']}: {a['files']} files x 10 KiB, large file "
          f"{a['large_mib']} MiB, median of {a['repeat']}")
    print()
    print(markdown(doc, rows))
    print()
    for s, sd in doc["systems"].items():
        print(f"{TITLES[s]}: {sd['version']}; page cache before reads: {sd['page_cache'] or 'n/a'}")
        if sd.get("error"):
            print(f"  {TITLES[s]} FAILED: {sd['error']}")
        for name, r in sd["results"].items():
            if r.get("error"):
                print(f"  {TITLES[s]} {name} FAILED: {r['error']}")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="", help=f"comma-separated subset of: {','.join(WORKLOADS)}")
    p.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated subset of: {','.join(SYSTEMS)}")
    p.add_argument("--files", type=int, default=2000, help="files per small-file workload (default 2000)")
    p.add_argument("--large-mib", type=int, default=256, help="size of the large file, MiB (default 256)")
    p.add_argument("--repeat", type=int, default=3, help="repetitions; each figure is the median (default 3)")
    p.add_argument("--json-out", type=Path, default=None, help="also write the raw results as JSON here")
    args = p.parse_args(argv)
    args.selected = [s.strip() for s in args.only.split(",") if s.strip()] or WORKLOADS
    args.systems_list = [s.strip() for s in args.systems.split(",") if s.strip()]
    for what, got, allowed in (("--only", args.selected, WORKLOADS), ("--systems", args.systems_list, SYSTEMS)):
        if set(got) - set(allowed):
            p.error(f"unknown in {what}: {', '.join(sorted(set(got) - set(allowed)))}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    doc = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
           "command": " ".join(["python -m benchmarks.compare", *sys.argv[1:]]),
           "python": platform.python_version(), "selected": args.selected,
           "args": {"files": args.files, "large_mib": args.large_mib, "repeat": args.repeat},
           "systems": {}}
    tmp = Path(tempfile.mkdtemp(prefix="ringfs-compare-"))
    try:
        for s in args.systems_list:
            doc["systems"][s] = run_system(s, args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    doc["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    rows = build_rows(doc)
    if args.json_out:
        args.json_out.write_text(json.dumps({**doc, "rows": rows}, indent=2, default=str))
    print_report(doc, rows)
    failed = any(sd.get("error") or any(r.get("error") for r in sd["results"].values())
                 for sd in doc["systems"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
