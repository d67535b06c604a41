"""``python -m benchmarks.profile``: where each service process spends its CPU during a benchmark phase.

Runs the chosen workloads of ``python -m benchmarks`` on a cluster started the same way (leader, 3 chunk
servers, 1 user app, replication 3) and, for every selected phase, samples each service process with
py-spy (``py-spy record --pid ... --format raw --nonblocking``; installed by the ``bench`` extra;
reading another process's stacks needs root or ``ptrace`` rights). The read phases keep their rules (user
app restarted, page cache dropped) and py-spy attaches to the restarted user app.

Prints, per phase and per process, the CPU seconds the phase cost it, and the share of its busy samples
by the package of the innermost Python frame (``hashlib`` calls show up in the frame that makes them), then
the heaviest lines. The raw stacks are left in ``--out`` (one ``<phase>.<service>.txt`` per pair, the
"collapsed" format that flamegraph tools and speedscope read).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

from benchmarks import cluster as cl, workloads as w
from benchmarks.binaries import find_binary
from benchmarks.__main__ import WORKLOADS
from benchmarks.runner import run_pairs, stop_cluster


def py_spy_binary() -> str:
    return find_binary("py-spy", "py-spy")


class ProfiledBench(w.Bench):
    """A :class:`benchmarks.workloads.Bench` whose phases in ``profiled`` also run py-spy on every service."""

    def __init__(self, *args, profiled: set[str], out: Path, rate: int, **kw) -> None:
        super().__init__(*args, **kw)
        self.profiled, self.out, self.rate = profiled, out, rate
        self.stacks: dict[str, dict[str, Path]] = {}  # phase -> service -> raw stacks file

    @contextmanager
    def phase(self, name: str, ops: float, unit: str = "file"):
        if name not in self.profiled or name in self.stacks:  # one repetition per phase is profiled
            with super().phase(name, ops, unit):
                yield
            return
        spies = []
        self.stacks[name] = {}
        for svc in self.cluster.services():
            path = self.out / f"{name}.{svc.name}.txt"
            self.stacks[name][svc.name] = path
            spies.append(subprocess.Popen(
                [py_spy_binary(), "record", "--pid", str(svc.pid), "--subprocesses", "--format", "raw",
                 "--nonblocking", "--rate", str(self.rate), "--output", str(path)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        try:
            with super().phase(name, ops, unit):
                yield
        finally:
            for spy in spies:
                spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            for spy in spies:
                try:
                    spy.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    spy.kill()


def read_collapsed(path: Path) -> Counter:
    """``{stack: samples}`` from a py-spy raw file (``frame;frame;... count`` per line)."""
    stacks: Counter = Counter()
    if not path.exists():
        return stacks
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[stack] += int(count)
    return stacks


def leaf_package(frame: str) -> str:
    """``"write (aiohttp/http_writer.py:80)"`` -> ``"aiohttp"``; ``"f (chunk_server/store.py:9)"`` ->
    ``"chunk_server/store.py"`` (RingFS's own modules by file, libraries by top-level package)."""
    where = frame[frame.rfind("(") + 1:].rstrip(")")
    file = where.rsplit(":", 1)[0]
    top = file.split("/", 1)[0]
    if top in {"leader", "chunk_server", "user_app", "shared"}:
        return file
    return top.removesuffix(".py")


def summarize(stacks: Counter, top: int) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """(busy samples, heaviest leaf packages, heaviest leaf lines), both lists of ``(name, samples)``."""
    by_package: Counter = Counter()
    by_line: Counter = Counter()
    for stack, n in stacks.items():
        leaf = stack.rsplit(";", 1)[-1]
        by_package[leaf_package(leaf)] += n
        by_line[leaf] += n
    return sum(stacks.values()), by_package.most_common(top), by_line.most_common(top)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="small_write,small_read",
                   help=f"phases to profile, comma-separated, of: {','.join(WORKLOADS)} (default small_write,small_read)")
    p.add_argument("--files", type=int, default=1000, help="files per small-file workload (default 1000)")
    p.add_argument("--large-mib", type=int, default=256, help="size of the large file, MiB (default 256)")
    p.add_argument("--rate", type=int, default=200, help="py-spy samples per second (default 200)")
    p.add_argument("--top", type=int, default=8, help="rows per list (default 8)")
    p.add_argument("--out", type=Path, default=None, help="keep the raw stacks here (default: a temp dir, removed)")
    p.add_argument("--env", action="append", default=[], metavar="K=V", help="extra environment for every service")
    args = p.parse_args(argv)
    selected = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(selected) - set(WORKLOADS)
    if unknown or not selected:
        p.error(f"unknown or no workload(s) in --only: {', '.join(sorted(unknown))}")
    py_spy_binary()

    tmp = Path(tempfile.mkdtemp(prefix="ringfs-profile-"))
    out = args.out or tmp / "stacks"
    out.mkdir(parents=True, exist_ok=True)
    (tmp / "work").mkdir()
    try:
        cluster = cl.start_cluster(tmp / "cluster", dict(kv.split("=", 1) for kv in args.env))
        bench = ProfiledBench(cluster=cluster, files=args.files, large_mib=args.large_mib, workdir=tmp / "work",
                              run_id=uuid.uuid4().hex[:8], profiled=set(selected), out=out, rate=args.rate)
        try:
            results = run_pairs(bench, w.PAIRS, w.FUNCS, selected, repeat=1)
        finally:
            stop_cluster(cluster)
        for phase in selected:
            error = results.get(phase, {}).get("error")
            if error:
                print(f"\n{phase}: FAILED ({error})")
                continue
            ops, unit = bench.ops.get(phase, (1, "file"))
            cpu = bench.cpu.get(phase, [{}])[0]
            print(f"\n=== {phase}: {ops:g} {unit}s; CPU ms per {unit} by process: "
                  + ", ".join(f"{k} {v / ops * 1e3:.3g}" for k, v in cpu.items()))
            for service, path in bench.stacks.get(phase, {}).items():
                busy, packages, lines = summarize(read_collapsed(path), args.top)
                if not busy:
                    print(f"--- {service}: no samples")
                    continue
                print(f"--- {service}: {busy} busy samples; by package: "
                      + ", ".join(f"{name} {n / busy:.0%}" for name, n in packages))
                for frame, n in lines:
                    print(f"      {n / busy:5.1%}  {frame}")
        if args.out:
            print(f"\nraw stacks: {out}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
