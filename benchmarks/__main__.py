"""``python -m benchmarks``: start a local RingFS cluster and measure it. See docs/benchmark.md."""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path

from benchmarks import report, workloads as w
from benchmarks.cluster import start_cluster

WORKLOADS = ["small_write", "small_read", "par_write", "par_read", "tree_put", "tree_get",
             "large_write", "large_read", "large_write_64k", "large_read_64k"]
# (write, read, extra kwargs): a read needs its write's data, so the write runs (untimed for the
# report) even when only the read is selected.
PAIRS = [
    ("small_write", "small_read", {}),
    ("par_write", "par_read", {}),
    ("tree_put", "tree_get", {}),
    ("large_write", "large_read", {}),
    ("large_write_64k", "large_read_64k", {"chunk_size": 65536}),
]
FUNCS = {"small_write": (w.small_write, w.small_read), "par_write": (w.par_write, w.par_read),
         "tree_put": (w.tree_put, w.tree_get), "large_write": (w.large_write, w.large_read),
         "large_write_64k": (w.large_write, w.large_read)}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--only", default="", help=f"comma-separated subset of: {','.join(WORKLOADS)}")
    p.add_argument("--files", type=int, default=2000, help="files per small-file workload (default 2000)")
    p.add_argument("--large-mib", type=int, default=256, help="size of the large file, MiB (default 256)")
    p.add_argument("--repeat", type=int, default=3, help="repetitions; each figure is the median (default 3)")
    p.add_argument("--workers", type=int, default=None, help="WORKERS for the user app (default: its own, 1)")
    p.add_argument("--data-dir", type=Path, default=None, help="cluster data dir (default: a temp dir, removed)")
    p.add_argument("--env", action="append", default=[], metavar="K=V",
                   help="extra environment for every service, e.g. --env FSYNC=true (repeatable)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--json-out", type=Path, default=None, help="also write the JSON document to this file")
    p.add_argument("--keep", action="store_true", help="keep the temp data dir")
    args = p.parse_args(argv)
    selected = [s.strip() for s in args.only.split(",") if s.strip()] or WORKLOADS
    unknown = set(selected) - set(WORKLOADS)
    if unknown:
        p.error(f"unknown workload(s) in --only: {', '.join(sorted(unknown))}")
    args.selected = selected
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    env = dict(kv.split("=", 1) for kv in args.env)
    app_env = {"WORKERS": str(args.workers)} if args.workers else {}
    tmp = None
    if args.data_dir is None:
        tmp = Path(tempfile.mkdtemp(prefix="ringfs-bench-"))
        data_dir = tmp / "cluster"
    else:
        data_dir = args.data_dir
    workdir = (tmp or Path(tempfile.mkdtemp(prefix="ringfs-bench-work-"))) / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        git_rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=w.REPO, capture_output=True,
                                 text=True).stdout.strip()
    except OSError:
        git_rev = ""
    doc = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "command": " ".join(["python -m benchmarks", *sys.argv[1:]]),
           "git": git_rev, "python": platform.python_version(), "cpus": os.cpu_count(),
           "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
           "env": {**env, **app_env}, "data_dir": str(data_dir), "results": {}, "figures": [], "cpu": {},
           "user_app_hwm": {}, "page_cache": ""}

    w.log(f"starting cluster under {data_dir} (env {doc['env'] or '{}'})")
    cluster = start_cluster(data_dir, env)
    if app_env:  # WORKERS only for the user app: restart it with the knob
        app = cluster.apps[0]
        app.stop()
        app.env.update(app_env)
        app.start()
    bench = w.Bench(cluster=cluster, files=args.files, large_mib=args.large_mib, workdir=workdir,
                    run_id=uuid.uuid4().hex[:8])
    try:
        for write, read, kw in PAIRS:
            want_w, want_r = write in args.selected, read in args.selected
            if not (want_w or want_r):
                continue
            fw, fr = FUNCS[write]
            if want_w:
                doc["results"][write] = {"reps": [], "error": None}
            if want_r:
                doc["results"][read] = {"reps": [], "error": None}
            for rep in range(args.repeat):
                w.log(f"{write} rep {rep + 1}/{args.repeat}")
                try:
                    fig, state = fw(bench, rep, **kw)
                except Exception as exc:  # noqa: BLE001
                    msg = f"{exc.__class__.__name__}: {exc}"
                    w.log(f"{write} FAILED: {msg}\n{traceback.format_exc()}")
                    for name in (write, read):
                        if name in doc["results"]:
                            doc["results"][name]["error"] = msg if name == write else f"skipped: {write} failed"
                    break
                if want_w:
                    doc["results"][write]["reps"].append(fig)
                    w.log(f"  {fig}")
                if want_r:
                    w.log(f"{read} rep {rep + 1}/{args.repeat}")
                    try:
                        fig = fr(bench, rep, state, **kw)
                        doc["results"][read]["reps"].append(fig)
                        w.log(f"  {fig}")
                    except Exception as exc:  # noqa: BLE001
                        msg = f"{exc.__class__.__name__}: {exc}"
                        w.log(f"{read} FAILED: {msg}\n{traceback.format_exc()}")
                        doc["results"][read]["error"] = msg
                        break
                state = None
        bench.sample_memory()
    finally:
        dead = [s.name for s in cluster.services() if not s.alive]
        if dead:
            doc["dead_services"] = dead
            w.log(f"WARNING: services not running at the end: {dead}")
        cluster.stop()
        if tmp is not None and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp is None:
            shutil.rmtree(workdir.parent, ignore_errors=True)

    doc["cpu"] = bench.cpu
    doc["user_app_hwm"] = bench.app_hwm
    doc["page_cache"] = bench.cache_drop
    doc["peak_rss_mib"] = bench.peak_rss
    doc["peak_rss_largest_process_mib"] = bench.peak_rss_single
    doc["figures"] = report.build_figures(doc["results"], bench.peak_rss, bench.peak_rss_single)
    if args.json_out:
        args.json_out.write_text(report.to_json(doc))
    if args.json:
        print(report.to_json(doc))
    else:
        report.print_table(doc)
    return 1 if any(r.get("error") for r in doc["results"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
