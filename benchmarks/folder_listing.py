"""How long one folder of many files takes to list: WebDAV ``PROPFIND`` (depth 1, all properties, as a file
manager asks) against the user API's ``GET /list``. Prints the median of ``--repeat`` listings of each.

    python -m benchmarks.folder_listing                   # 10,000 files of 100 B, 5 listings each
    python -m benchmarks.folder_listing --files 2000 --repeat 3

Starts its own cluster (leader, 3 chunk servers, 1 user app, replication 3, SQLite) under a temp folder and
writes the files with ``POST /batch/write``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.cluster import start_cluster
from shared.protocol.batches import encode_batch_files
from tests.conftest import FAST_ENV
from tests.utils.auth import ROOT

BATCH = 1000  # files per POST /batch/write


def fill(client: httpx.Client, folder: str, files: int, size: int) -> None:
    for start in range(0, files, BATCH):
        batch = [(f"{folder}/file {i:06d}.txt", os.urandom(size)) for i in range(start, min(files, start + BATCH))]
        r = client.post("/batch/write", content=encode_batch_files(batch))
        r.raise_for_status()
        assert all("error" not in x for x in r.json()["results"])


def timed(call) -> float:
    start = time.perf_counter()
    r = call()
    assert r.status_code in (200, 207), (r.status_code, r.text[:300])
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--file-size", type=int, default=100, help="bytes per file (default 100)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ringfs-listbench-") as tmp:
        cluster = start_cluster(Path(tmp), FAST_ENV)
        try:
            with httpx.Client(base_url=cluster.url, auth=ROOT, timeout=600) as client:
                fill(client, "big", args.files, args.file_size)
                propfind = [timed(lambda: client.request("PROPFIND", "/dav/big/", headers={"Depth": "1"}))
                            for _ in range(args.repeat)]
                listing = [timed(lambda: client.get("/list/big")) for _ in range(args.repeat)]
                answer = client.request("PROPFIND", "/dav/big/", headers={"Depth": "1"})
                assert answer.text.count("<ns0:response>") == args.files + 1
        finally:
            cluster.stop()
    print(f"{args.files} files in one folder, median of {args.repeat}:")
    print(f"  PROPFIND depth 1 (WebDAV)  {statistics.median(propfind):8.3f} s   runs {[round(x, 3) for x in propfind]}")
    print(f"  GET /list (user API)       {statistics.median(listing):8.3f} s   runs {[round(x, 3) for x in listing]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
