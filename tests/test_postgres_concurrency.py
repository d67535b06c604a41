"""Concurrent commits with the leader's metadata on PostgreSQL: two user apps, many threads.

Skipped unless ``RINGFS_TEST_POSTGRES`` names a PostgreSQL server (``.ci/run`` starts one); the cluster
gets a fresh database there (``tests/conftest.py``: ``database_url_for``).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import PG_ENV
from tests.utils.data import random_bytes, sha256_hex
from user_app.client import Client, ClientError

pytestmark = [
    pytest.mark.skipif(not os.environ.get(PG_ENV), reason=f"{PG_ENV} not set: no PostgreSQL server to test on"),
    pytest.mark.timeout(180),
]

THREADS = 16
SAME_PATH_WRITES = 48  # versions of one path, committed concurrently through both user apps
PATHS = 48  # different paths, committed concurrently
RACES = 12  # create-only paths, each raced by RACERS writers
RACERS = 6


@pytest.fixture(scope="module")
def pg_cluster(tmp_path_factory):
    from user_app.client.local_cluster import LocalCluster
    from tests.conftest import FAST_ENV, database_url_for

    data = tmp_path_factory.mktemp("pg-concurrency")
    url = database_url_for(data)
    assert url.startswith("postgresql"), url
    # What is under test is the metadata store, not failure detection: a lenient health-check timeout
    # keeps a busy machine from marking chunk servers unhealthy mid-test.
    env = {**FAST_ENV, "HEALTH_CHECK_INTERVAL": "1.0", "HEALTH_CHECK_TIMEOUT": "3.0"}
    with LocalCluster(data_dir=data, chunk_servers=3, user_apps=2, replication=3, env=env,
                      database_url=url) as c:
        yield c


@pytest.fixture(scope="module")
def clients(pg_cluster):
    cs = [Client(app.url, timeout=60) for app in pg_cluster.apps]
    assert len(cs) == 2
    yield cs
    for c in cs:
        c.close()


def content(tag: str, i: int) -> bytes:
    """Distinct, multi-chunk (chunk size 1024) content that names its writer."""
    head = f"{tag}:{i}:".encode()
    return head + random_bytes(1500 + 97 * i, seed=hash((tag, i)) & 0xFFFF)


def test_concurrent_versions_of_one_path_are_distinct_and_contiguous(clients):
    path = "pg/same/doc.bin"
    blobs = [content("same", i) for i in range(SAME_PATH_WRITES)]

    def put(i: int) -> tuple[int, dict]:
        return i, clients[i % 2].put(path, blobs[i])

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(put, range(SAME_PATH_WRITES)))

    versions = sorted(r["version"] for _, r in results)
    assert versions == list(range(1, SAME_PATH_WRITES + 1)), versions
    listed = clients[0].versions(path)
    assert [v["version"] for v in listed] == versions
    by_version = {r["version"]: blobs[i] for i, r in results}
    for i, r in results:
        assert r["sha256"] == sha256_hex(blobs[i]) and r["size"] == len(blobs[i])
    for version, blob in by_version.items():
        assert clients[version % 2].get(path, version=version) == blob, f"version {version}"
    latest = max(by_version)
    assert clients[1].get(path) == by_version[latest]


def test_concurrent_commits_of_different_paths_read_back(clients):
    blobs = {f"pg/many/{i:03d}.bin": content("many", i) for i in range(PATHS)}

    def put(item: tuple[int, str]) -> dict:
        i, path = item
        return clients[i % 2].put(path, blobs[path])

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(put, enumerate(blobs)))

    assert all(r["version"] == 1 for r in results)
    for i, (path, blob) in enumerate(blobs.items()):
        assert clients[(i + 1) % 2].get(path) == blob, path
    listed = {e["path"] if "path" in e else e.get("name") for e in clients[0].ls("pg/many", recursive=True)}
    assert len([p for p in listed if p and p.endswith(".bin")]) == PATHS


def test_create_only_races_have_exactly_one_winner(clients):
    start = threading.Barrier(RACERS)

    def race(path: str) -> tuple[list[tuple[bytes, dict]], list[int], bytes]:
        winners: list[tuple[bytes, dict]] = []
        losers: list[int] = []
        lock = threading.Lock()

        def attempt(j: int) -> None:
            blob = content(path, j)
            start.wait(timeout=30)
            try:
                result = clients[j % 2].put(path, blob, create_only=True)
            except ClientError as exc:
                with lock:
                    losers.append(exc.status)
            else:
                with lock:
                    winners.append((blob, result))

        threads = [threading.Thread(target=attempt, args=(j,)) for j in range(RACERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        return winners, losers, clients[0].get(path)

    for k in range(RACES):
        path = f"pg/race/{k}.bin"
        winners, losers, stored = race(path)
        assert len(winners) == 1, f"{path}: {len(winners)} winners, losers {losers}"
        assert losers == [412] * (RACERS - 1), f"{path}: {losers}"
        blob, result = winners[0]
        assert stored == blob
        # Exactly one committed version. Its number need not be 1: version numbers are taken at prepare
        # (leader/txns.py), so a loser that prepared first leaves a gap when its commit is refused.
        assert [v["version"] for v in clients[1].versions(path)] == [result["version"]]
