"""The leader's manifest cache (leader/manifest_cache.py) is never stale: ``GET /manifest`` and ``GET /stat``
after a commit, a newer version, a delete, a rename, an undelete or a lost create-only race answer what
SQL holds, also while readers hammer the path during commits. Real leader processes (SQLite, or
PostgreSQL with ``RINGFS_TEST_POSTGRES``), as in tests/test_leader.py; plus unit tests of the cache.
"""

from __future__ import annotations

import hashlib
import threading

import httpx
import pytest

from leader.manifest_cache import CachedVersion, ManifestCache
from shared.protocol.manifests import decode_manifest
from shared.protocol.models import VersionInfo
from tests.test_leader import CHUNK, prepare, put, start_leader  # noqa: F401  (fixture)
from tests.utils.auth import authed_client

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def leader(start_leader) -> httpx.Client:  # noqa: F811
    return start_leader()[1]


def digests_of(data: bytes) -> bytes:
    return b"".join(hashlib.sha256(data[i:i + CHUNK]).digest() for i in range(0, len(data), CHUNK))


def manifest(client: httpx.Client, path: str, version: int | None = None) -> tuple[int, dict | None, bytes]:
    params = {"path": path} if version is None else {"path": path, "version": version}
    r = client.get("/manifest", params=params)
    if r.status_code != 200:
        return r.status_code, None, b""
    m = decode_manifest(r.content)
    return 200, m.info.model_dump(), m.digests


def assert_latest(client: httpx.Client, path: str, data: bytes, version: int) -> None:
    """Manifest and stat of ``path`` (twice each: a miss that fills, then a hit) name ``version`` of
    ``data``."""
    for _ in range(2):
        status, meta, digests = manifest(client, path)
        assert status == 200 and meta["version"] == version and meta["state"] == "committed", meta
        assert meta["sha256"] == hashlib.sha256(data).hexdigest() and digests == digests_of(data)
        stat = client.get("/stat", params={"path": path})
        assert stat.status_code == 200 and stat.json() == meta


def assert_gone(client: httpx.Client, path: str, version: int | None = None) -> None:
    for _ in range(2):
        assert manifest(client, path, version)[0] == 404
        params = {"path": path} if version is None else {"path": path, "version": version}
        assert client.get("/stat", params=params).status_code == 404


def test_manifest_follows_commits_and_new_versions(leader):
    a1, a2, a3 = b"one" * 700, b"two" * 500, b"three" * 10
    assert put(leader, "c/a", a1)["version"] == 1
    assert_latest(leader, "c/a", a1, 1)
    # A pending version is invisible; its commit makes it the latest at once.
    r = prepare(leader, "c/a", a2)
    assert r.status_code == 201 and r.json()["version"] == 2
    assert_latest(leader, "c/a", a1, 1)
    c = leader.post(f"/txns/{r.json()['txn_id']}/commit")
    assert c.status_code == 200 and c.json()["version"] == 2
    assert_latest(leader, "c/a", a2, 2)
    # Idempotent re-commit answers the same info and changes nothing.
    again = leader.post(f"/txns/{r.json()['txn_id']}/commit")
    assert again.status_code == 200 and again.json() == c.json()
    assert put(leader, "c/a", a3)["version"] == 3
    assert_latest(leader, "c/a", a3, 3)
    # Older versions by number stay readable (and cached) alongside.
    for v, data in ((1, a1), (2, a2), (3, a3)):
        for _ in range(2):
            status, meta, digests = manifest(leader, "c/a", v)
            assert status == 200 and meta["version"] == v and digests == digests_of(data)
    # An aborted pending version never shows.
    r = prepare(leader, "c/a", b"aborted")
    assert leader.post(f"/txns/{r.json()['txn_id']}/abort").status_code == 200
    assert_latest(leader, "c/a", a3, 3)


def test_manifest_after_delete_undelete_and_rewrite(leader):
    a1, a2, b1 = b"x" * 3000, b"y" * 10, b"z" * 2
    put(leader, "d/f", a1)
    put(leader, "d/f", a2)
    assert_latest(leader, "d/f", a2, 2)
    manifest(leader, "d/f", 1)  # fill the by-number entry too
    assert leader.delete("/files", params={"path": "d/f"}).json()["deleted_versions"] == 2
    assert_gone(leader, "d/f")
    assert_gone(leader, "d/f", 1)
    r = leader.post("/undelete", json={"path": "d/f"})
    assert r.status_code == 200 and r.json()["restored_versions"] == 2
    assert_latest(leader, "d/f", a2, 2)
    assert manifest(leader, "d/f", 1)[2] == digests_of(a1)
    # Delete again, then a new write: numbering continues above the tombstones.
    leader.delete("/files", params={"path": "d/f"})
    assert_gone(leader, "d/f")
    assert put(leader, "d/f", b1)["version"] == 3
    assert_latest(leader, "d/f", b1, 3)
    assert_gone(leader, "d/f", 2)


def test_manifest_after_rename_of_file_and_folder(leader):
    a, b, c = b"a" * 1500, b"b" * 20, b"c" * 5
    put(leader, "r/x/one", a)
    put(leader, "r/x/two", b)
    put(leader, "r/y", c)
    for path, data in (("r/x/one", a), ("r/x/two", b), ("r/y", c)):
        assert_latest(leader, path, data, 1)
    assert leader.post("/rename", json={"src": "r/y", "dst": "r/z"}).json()["renamed"] == 1
    assert_gone(leader, "r/y")
    assert_latest(leader, "r/z", c, 1)
    assert leader.post("/rename", json={"src": "r/x", "dst": "s/x"}).json()["renamed"] == 2
    assert_gone(leader, "r/x/one")
    assert_gone(leader, "r/x/two", 1)
    assert_latest(leader, "s/x/one", a, 1)
    assert_latest(leader, "s/x/two", b, 1)
    # A file renamed onto a path with tombstones is renumbered above them.
    put(leader, "t/f", b"old")
    leader.delete("/files", params={"path": "t/f"})
    assert_gone(leader, "t/f")
    assert leader.post("/rename", json={"src": "r/z", "dst": "t/f"}).status_code == 200
    assert_latest(leader, "t/f", c, 2)


def test_create_only_lost_race_leaves_manifest_alone(leader):
    first = prepare(leader, "co/f", b"first", create_only="true")
    second = prepare(leader, "co/f", b"second", create_only="true")
    assert first.status_code == 201 and second.status_code == 201
    assert leader.post(f"/txns/{first.json()['txn_id']}/commit").status_code == 200
    assert_latest(leader, "co/f", b"first", 1)
    lost = leader.post(f"/txns/{second.json()['txn_id']}/commit")
    assert lost.status_code == 412, lost.text
    assert_latest(leader, "co/f", b"first", 1)
    assert leader.post("/txns/nope/commit").status_code == 404
    assert prepare(leader, "co/f", b"third", create_only="true").status_code == 412


def test_prepare_validation_errors_unchanged(leader):
    r = leader.post("/txns", params={"path": "v/f", "size": "-1", "sha256": "0" * 64})
    assert r.status_code == 400
    err = r.json()["error"]
    assert "query.txn_id: Field required" in err and "query.size: Input should be greater than or equal to 0" in err
    r = leader.post("/txns", params={"txn_id": "t1", "path": "v/f", "size": "x", "sha256": "0" * 64})
    assert r.status_code == 400 and "query.size" in r.json()["error"]
    r = prepare(leader, "v/f", b"data", txn_id="t2")
    assert r.status_code == 201
    assert prepare(leader, "v/g", b"data", txn_id="t2").status_code == 409


def test_concurrent_readers_never_see_stale_latest_after_commit(leader, start_leader):  # noqa: F811
    """Readers hammer ``GET /manifest`` and ``/stat`` while a writer commits versions 1..N; every read
    started after a commit's response names that version or a newer one."""
    url = str(leader.base_url)
    committed = [0]  # highest version whose commit response arrived
    deletes = [0, 0]  # delete+undelete rounds started, finished (the path is legitimately 404 meanwhile)
    lock = threading.Lock()
    stop = threading.Event()
    problems: list[str] = []
    n_versions = 40

    def reader() -> None:
        with authed_client(base_url=url, timeout=30) as c:
            while not stop.is_set():
                with lock:
                    floor, finished = committed[0], deletes[1]
                endpoint = "/manifest" if floor % 2 else "/stat"
                r = c.get(endpoint, params={"path": "hot/f"})
                if r.status_code == 404:
                    with lock:
                        overlapped = deletes[0] != finished
                    if floor and not overlapped:
                        problems.append(f"404 after version {floor} committed")
                    continue
                version = decode_manifest(r.content).info.version if endpoint == "/manifest" else r.json()["version"]
                if version < floor:
                    problems.append(f"{endpoint} saw version {version} after {floor} committed")

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for i in range(1, n_versions + 1):
            info = put(leader, "hot/f", f"v{i}".encode() * (i * 37))
            assert info["version"] == i
            with lock:
                committed[0] = i
            if i % 10 == 0:  # a delete + undelete in the mix
                with lock:
                    deletes[0] += 1
                leader.delete("/files", params={"path": "hot/f"})
                assert leader.post("/undelete", json={"path": "hot/f"}).status_code == 200
                with lock:
                    deletes[1] += 1
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not problems, problems[:5]
    assert_latest(leader, "hot/f", f"v{n_versions}".encode() * (n_versions * 37), n_versions)


# ---------------------------------------------------------------- the cache itself


def entry(path: str, version: int, size: int = 100) -> CachedVersion:
    info = VersionInfo(path=path, version=version, size=size, sha256="0" * 64, chunks=1, chunk_size=CHUNK,
                       replication=1, state="committed", created_at=0.0)
    return CachedVersion(info, b"m" * size)


def test_cache_refuses_stale_fill_and_busy_paths():
    cache = ManifestCache(max_bytes=10**6)
    gen = cache.generation()
    cache.invalidate("a")  # a mutation between the reader's query and its fill
    assert not cache.put("a", None, entry("a", 1), gen)
    assert cache.get("a", None) is None
    assert cache.put("a", None, entry("a", 1), cache.generation())
    assert cache.get("a", None).info.version == 1
    cache.begin_write("a")
    assert cache.get("a", None) is None  # invalidated and bypassed while the write is in flight
    assert not cache.put("a", None, entry("a", 2), cache.generation())
    cache.end_write("a")
    assert cache.put("a", 2, entry("a", 2), cache.generation())
    cache.begin_write_all()
    assert cache.get("a", 2) is None and len(cache) == 0
    assert not cache.put("b", None, entry("b", 1), cache.generation())
    cache.end_write_all()
    assert cache.put("b", None, entry("b", 1), cache.generation())


def test_cache_is_bounded_by_bytes_lru():
    cache = ManifestCache(max_bytes=5 * (1000 + 600))
    for i in range(5):
        assert cache.put(f"p{i}", None, entry(f"p{i}", 1, 1000), cache.generation())
    assert cache.get("p0", None) is not None  # p0 becomes most recent
    cache.put("p5", None, entry("p5", 1, 1000), cache.generation())
    assert cache.get("p1", None) is None and cache.get("p0", None) is not None
    assert cache.bytes <= cache.max_bytes and len(cache) == 5
    assert not cache.put("big", None, entry("big", 1, 10**6), cache.generation())
    cache.invalidate("p0")
    assert cache.get("p0", None) is None and len(cache) == 4
