"""S3 clients beside the native CLI on the same work: ``aws s3 cp`` of one large file up and down (multipart,
8 MiB parts, 10 in flight: the aws cli's defaults) against ``ringfs put``/``get``, and ``rclone sync`` of many
small files against ``ringfs put -r``. Prints medians of ``--repeat`` runs, and the user app's peak RSS.

    python -m benchmarks.s3_transfer                      # 1 GiB, 2,000 files of 4 KiB, 3 runs
    python -m benchmarks.s3_transfer --size-mib 256 --files 500 --repeat 1

Needs ``aws`` and ``rclone`` next to this Python (``pip install -e '.[test]'`` installs both). Every run
starts its own cluster (leader, 3 chunk servers, 1 user app, replication 3, SQLite) under a temp folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.cluster import service_hwm_mib, start_cluster

BIN = Path(sys.executable).parent
REGION = "us-east-1"


def make_large(path: Path, size: int) -> None:
    """``size`` bytes of random data (no two chunks alike, so dedup cannot help either side)."""
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, 16 << 20))
            f.write(block)
            left -= len(block)


def make_small(root: Path, files: int, size: int) -> None:
    for i in range(files):
        folder = root / f"dir{i % 20:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"file{i:05d}.bin").write_bytes(os.urandom(size))


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def client_env(cluster, work: Path) -> dict[str, str]:
    key, secret = cluster.root.access_key, cluster.root.secret_key
    (work / "aws.conf").write_text("[default]\n")
    return {
        **os.environ, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret, "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(work / "aws.conf"), "AWS_SHARED_CREDENTIALS_FILE": str(work / "aws.creds"),
        "RCLONE_CONFIG": str(work / "rclone.conf"), "RCLONE_CONFIG_RFS_TYPE": "s3",
        "RCLONE_CONFIG_RFS_PROVIDER": "Other", "RCLONE_CONFIG_RFS_ENDPOINT": cluster.s3_url(),
        "RCLONE_CONFIG_RFS_ACCESS_KEY_ID": key, "RCLONE_CONFIG_RFS_SECRET_ACCESS_KEY": secret,
        "RCLONE_CONFIG_RFS_REGION": REGION, "RCLONE_CONFIG_RFS_FORCE_PATH_STYLE": "true",
        "RINGFS_ACCESS_KEY": key, "RINGFS_SECRET_KEY": secret,
    }


def one_run(work: Path, large: Path, small: Path) -> dict[str, float]:
    data = work / "cluster"
    cluster = start_cluster(data, {})
    try:
        env = client_env(cluster, work)
        aws = [str(BIN / "aws"), "--endpoint-url", cluster.s3_url(), "s3"]
        ringfs = [str(BIN / "ringfs")]
        rclone = [str(BIN / "rclone"), "--config", str(work / "rclone.conf")]
        (work / "rclone.conf").write_text("")
        size = large.stat().st_size
        out: dict[str, float] = {}
        subprocess.run([*aws, "mb", "s3://bench"], env=env, check=True, stdout=subprocess.DEVNULL)
        out["aws_cp_up_mb_s"] = size / 1e6 / timed([*aws, "cp", "--only-show-errors", str(large), "s3://bench/large.bin"], env)
        out["aws_cp_down_mb_s"] = size / 1e6 / timed([*aws, "cp", "--only-show-errors", "s3://bench/large.bin",
                                                      str(work / "down-aws.bin")], env)
        out["native_put_mb_s"] = size / 1e6 / timed([*ringfs, "put", "--url", cluster.url, str(large), "native/large.bin"], env)
        out["native_get_mb_s"] = size / 1e6 / timed([*ringfs, "get", "--url", cluster.url, "native/large.bin",
                                                     str(work / "down-native.bin")], env)
        files = sum(1 for p in small.rglob("*") if p.is_file())
        out["rclone_sync_files_s"] = files / timed([*rclone, "sync", str(small), "rfs:bench/small"], env)
        out["native_put_r_files_s"] = files / timed([*ringfs, "put", "-r", "--url", cluster.url, str(small),
                                                     "native/small"], env)
        out["user_app_peak_rss_mib"] = service_hwm_mib(cluster.apps[0])[0]
        for name in ("down-aws.bin", "down-native.bin"):
            (work / name).unlink(missing_ok=True)
        return out
    finally:
        cluster.stop()
        shutil.rmtree(data, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="the large file, MiB (default 1024)")
    parser.add_argument("--files", type=int, default=2000, help="small files for the sync (default 2000)")
    parser.add_argument("--file-size", type=int, default=4096, help="bytes per small file (default 4096)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ringfs-s3bench-") as tmp:
        work = Path(tmp)
        large, small = work / "large.bin", work / "small"
        make_large(large, args.size_mib << 20)
        make_small(small, args.files, args.file_size)
        runs = []
        for i in range(args.repeat):
            runs.append(one_run(work, large, small))
            print(f"run {i + 1}: " + ", ".join(f"{k} {v:.1f}" for k, v in runs[-1].items()), flush=True)
    print(f"\nmedians of {args.repeat} runs ({args.size_mib} MiB file; {args.files} files of {args.file_size} B):")
    for key in runs[0]:
        print(f"  {key:24s} {statistics.median(r[key] for r in runs):10.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
