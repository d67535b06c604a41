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
from pathlib import Path

from benchmarks import report, workloads as w
from benchmarks.cluster import start_cluster
from benchmarks.runner import measure

WORKLOADS = ["small_write", "small_read", "par_write", "par_read", "tree_put", "tree_get",
             "large_write", "large_read", "large_write_64k", "large_read_64k",
             "large_write_1k", "large_read_1k"]


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
           "user_app_hwm": {}, "ops": {}, "page_cache": ""}

    w.log(f"starting cluster under {data_dir} (env {doc['env'] or '{}'})")
    cluster = start_cluster(data_dir, env)
    if app_env:  # WORKERS only for the user app: restart it with the knob
        app = cluster.apps[0]
        app.stop()
        app.env.update(app_env)
        app.start()
    try:
        bench = measure(cluster, w.PAIRS, w.FUNCS, args, workdir, doc)
    finally:
        if tmp is not None and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp is None:
            shutil.rmtree(workdir.parent, ignore_errors=True)

    doc["cpu"] = bench.cpu
    doc["user_app_hwm"] = bench.app_hwm
    doc["ops"] = bench.ops
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
