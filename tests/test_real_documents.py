"""Real input nobody here wrote: the Python standard library's own .py files, stored and read back
byte-identical through the CLI's tree copy, with one chunk server killed (kill -9) before the read."""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

# A few MB keeps CI fast; the README's 50 MB run uses RINGFS_STDLIB_BYTES=50000000.
SUBSET_BYTES = int(os.environ.get("RINGFS_STDLIB_BYTES", 4_000_000))


def stdlib_subset(dest: Path, limit: int) -> int:
    """Copy files of the running interpreter's stdlib into ``dest`` up to ``limit`` bytes: its .py
    sources first (31 MB on 3.11), then its other files (text, data, test fixtures) for larger runs."""
    src = Path(sysconfig.get_paths()["stdlib"])
    total = 0
    files = sorted(p for p in src.rglob("*") if p.is_file() and not p.is_symlink())
    for path in sorted(files, key=lambda p: (p.suffix != ".py", p)):
        if "site-packages" in path.parts or "__pycache__" in path.parts:
            continue
        rel = path.relative_to(src)
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, out)
        total += path.stat().st_size
        if total >= limit:
            break
    return total


def ringfs(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "user_app.client.cli", *args], capture_output=True, text=True, timeout=600)


def same_tree(a: Path, b: Path) -> list[str]:
    """Relative paths that differ between two trees (missing, extra or different bytes)."""
    fa = {p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file()}
    fb = {p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file()}
    bad = sorted(fa ^ fb)
    bad += [r for r in sorted(fa & fb) if not filecmp.cmp(a / r, b / r, shallow=False)]
    return bad


def test_stdlib_tree_round_trips_with_a_chunk_server_killed(make_cluster, tmp_path):
    cluster = make_cluster(chunk_servers=3)
    src, dst = tmp_path / "src", tmp_path / "dst"
    total = stdlib_subset(src, SUBSET_BYTES)
    n_files = sum(1 for p in src.rglob("*") if p.is_file())
    assert total >= min(SUBSET_BYTES, 1_000_000) and n_files > 20

    put = ringfs("put", "-r", str(src), "stdlib", "--url", cluster.url)
    assert put.returncode == 0, put.stderr
    cluster.servers[0].kill()  # kill -9, before the get: every chunk still has 2 live copies
    get = ringfs("get", "-r", "stdlib", str(dst), "--url", cluster.url)
    assert get.returncode == 0, get.stderr
    assert same_tree(src, dst) == []
