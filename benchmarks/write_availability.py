"""``python benchmarks/write_availability.py``: how many writes fail while a chunk server is killed.

Starts a local cluster (``--servers``, replication factor 3), runs ``--writers`` threads that PUT small
files (3-7 KB) without pause, ``kill -9``s one chunk server after ``--before`` seconds, keeps writing for
``--after`` seconds, and prints failed writes out of all writes, split before/after the kill, with the
first errors. Then reads every acknowledged file back (a lost acknowledged byte is a failure too).

As ``benchmarks/attacks.py``, it measures the services of the source tree in the current directory
(``cd /tmp/old-tree && python /path/to/benchmarks/write_availability.py``). Run by hand; the README's
failure table and issue 10's note quote it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.cluster import start_cluster  # noqa: E402
from user_app.client import Client, ClientError  # noqa: E402
from user_app.client.local_cluster import LocalCluster  # noqa: E402


class Writers:
    def __init__(self, url: str, count: int) -> None:
        self.url = url
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.results: list[tuple[float, str, bytes | None, str]] = []  # (time, path, data or None, error)
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(count)]

    def run(self, worker: int) -> None:
        i = 0
        with Client(self.url, timeout=30) as c:
            while not self.stop.is_set():
                path, data = f"avail/{worker}/{i:06d}", os.urandom(3000 + (i * 997) % 4000)
                try:
                    c.put(path, data)
                    outcome = (time.monotonic(), path, data, "")
                except ClientError as exc:
                    outcome = (time.monotonic(), path, None, str(exc))
                with self.lock:
                    self.results.append(outcome)
                i += 1


def measure(cluster: LocalCluster, writers: int, before: float, after: float) -> dict:
    load = Writers(cluster.url, writers)
    for t in load.threads:
        t.start()
    time.sleep(before)
    killed_at = time.monotonic()
    cluster.servers[1].kill()
    time.sleep(after)
    load.stop.set()
    for t in load.threads:
        t.join()
    acked = [(path, data) for _, path, data, _ in load.results if data is not None]
    failed = [(t, err) for t, _, data, err in load.results if data is None]
    with Client(cluster.url, timeout=60) as c:
        lost = sum(1 for path, data in acked if c.get(path) != data)
    return {
        "servers": len(cluster.servers), "writes": len(load.results), "failed": len(failed),
        "writes_after_kill": sum(1 for t, *_ in load.results if t >= killed_at),
        "failed_after_kill": sum(1 for t, _ in failed if t >= killed_at),
        "acknowledged_lost": lost, "first_errors": sorted({err for _, err in failed})[:3],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", type=int, default=3)
    p.add_argument("--writers", type=int, default=4)
    p.add_argument("--before", type=float, default=5.0, help="seconds of writes before the kill")
    p.add_argument("--after", type=float, default=30.0, help="seconds of writes after the kill")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ringfs-avail-") as tmp:
        cluster = start_cluster(Path(tmp) / "cluster", {"HEALTH_CHECK_INTERVAL": "10"}, chunk_servers=args.servers)
        try:
            print(json.dumps(measure(cluster, args.writers, args.before, args.after)))
        finally:
            cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
