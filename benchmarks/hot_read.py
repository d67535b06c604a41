"""``python -m benchmarks.hot_read``: the user app's caches on documents read again and again.

Starts a cluster as ``ringfs up`` does (leader, 3 chunk servers, 1 user app, replication 3), writes
``--files`` files of 10 KiB, then reads them all ``--passes`` times through the same user app, without the
restart the main benchmark makes before every read phase. Runs with the defaults (chunk cache and read
leases), with read leases off (``LEASE_SECONDS=0``: every read asks the leader), and with both off, and
prints files/s of the first (cold) pass and the median of the later (hot) passes for each.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.cluster import start_cluster
from benchmarks.httpclient import Conn


def read_passes(url: str, files: dict[str, bytes], passes: int) -> list[float]:
    """files/s of each full read pass; raises ``AssertionError`` if a read returns other bytes."""
    rates = []
    with Conn(url) as conn:
        for _ in range(passes):
            t0 = time.perf_counter()
            for path, data in files.items():
                assert conn.get(path) == data, path
            rates.append(len(files) / (time.perf_counter() - t0))
    return rates


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.hot_read", description=__doc__)
    p.add_argument("--files", type=int, default=1000, help="files of 10 KiB (default 1000)")
    p.add_argument("--passes", type=int, default=4, help="read passes; the first is cold (default 4)")
    args = p.parse_args(argv)
    configs = (("defaults", {}), ("LEASE_SECONDS=0", {"LEASE_SECONDS": "0"}),
               ("both off", {"LEASE_SECONDS": "0", "CHUNK_CACHE_BYTES": "0"}))
    for label, env in configs:
        data_dir = Path(tempfile.mkdtemp(prefix="ringfs-hot-read-"))
        try:
            cluster = start_cluster(data_dir, env)  # also hands the root key to Conn
            try:
                files = {f"hot/f{i:05d}.bin": os.urandom(10240) for i in range(args.files)}
                with Conn(cluster.url) as conn:
                    for path, data in files.items():
                        conn.put(path, data)
                rates = read_passes(cluster.url, files, args.passes)
            finally:
                cluster.stop()
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
        hot = statistics.median(rates[1:]) if len(rates) > 1 else float("nan")
        print(f"{label:<22} cold pass {rates[0]:7.0f} files/s   hot passes (median) {hot:7.0f} files/s")


if __name__ == "__main__":
    main()
