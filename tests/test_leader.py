"""The leader as a real process: membership, health checks, the version 2PC, namespace, bad inputs.

Each test starts its own ``python -m leader`` on a free port with its own data dir (httpx's
``tests/conftest.py`` style: real servers, dynamic ports, waited for until they answer).
"""

from __future__ import annotations

import asyncio
import hashlib
import http.server
import json
import threading
import os
import uuid
from pathlib import Path

import httpx
import pytest

from shared.protocol.manifests import decode_manifest
from shared.auth.server_identity import health_proof, registration_proof
from shared.protocol.rules import HEALTH_CHECK_HEADER
from shared.ring import virtual_node_positions
from user_app.client.local_cluster import Service, free_port, wait_until
from tests.utils.auth import AUTH_ENV, authed_client

pytestmark = pytest.mark.timeout(60)

CHUNK = 1024
FAST_ENV = {**AUTH_ENV, "HEALTH_CHECK_INTERVAL": "0.2", "HEALTH_CHECK_TIMEOUT": "0.5", "VIRTUAL_NODES": "8",
            "CHUNK_SIZE": str(CHUNK), "REPLICATION_FACTOR": "2"}


# Set to a PostgreSQL server (``postgresql+asyncpg://user@host:port``) to run every test against a fresh
# database of its own there instead of SQLite.
PG_ENV = "RINGFS_TEST_POSTGRES"


def fresh_database(name: str) -> dict[str, str]:
    """``{"DATABASE_URL": ...}`` for a new empty PostgreSQL database, or ``{}`` (SQLite in DATA_DIR)."""
    base = os.environ.get(PG_ENV)
    if not base:
        return {}
    import asyncpg

    dbname = f"ringfs_{name}_{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        conn = await asyncpg.connect(base.replace("+asyncpg", "") + "/postgres")
        try:
            await conn.execute(f'CREATE DATABASE "{dbname}"')
        finally:
            await conn.close()

    asyncio.run(create())
    return {"DATABASE_URL": f"{base}/{dbname}"}


@pytest.fixture
def start_leader(tmp_path: Path):
    """``start_leader(name, **env) -> (Service, httpx.Client)``; a name keeps its data dir (and database)
    across restarts; every leader started is stopped afterwards."""
    started: list[tuple[Service, httpx.Client]] = []
    databases: dict[str, dict[str, str]] = {}

    def start(name: str = "leader", **env: str) -> tuple[Service, httpx.Client]:
        if name not in databases:
            databases[name] = fresh_database(name)
        svc = Service("leader", name, free_port(),
                      {"DATA_DIR": str(tmp_path / name), **databases[name], **FAST_ENV, **env},
                      tmp_path / f"{name}.log").start()
        client = authed_client(base_url=svc.url, timeout=10)
        started.append((svc, client))
        return svc, client

    yield start
    for svc, client in started:
        client.close()
        svc.stop()


@pytest.fixture
def leader(start_leader) -> httpx.Client:
    return start_leader()[1]


# The key the leader issued to each (leader, server id) at its first registration: a chunk server keeps it in
# DATA_DIR/server_key and proves it when it registers again and in every health check.
SERVER_KEYS: dict[tuple[str, str], bytes] = {}


def register_request(client: httpx.Client, server_id: str, url: str | None = None, capacity: int = 10**9) -> httpx.Response:
    url = url or f"http://127.0.0.1:{free_port()}"
    key = SERVER_KEYS.get((str(client.base_url), server_id))
    body = {"server_id": server_id, "advertise_url": url, "capacity_bytes": capacity}
    if key is not None:
        body["proof"] = registration_proof(key, server_id, url)
    r = client.post("/servers", json=body)
    if r.status_code == 200 and r.json().get("server_key"):
        SERVER_KEYS[(str(client.base_url), server_id)] = bytes.fromhex(r.json()["server_key"])
    return r


def register(client: httpx.Client, server_id: str, url: str | None = None, capacity: int = 10**9) -> dict:
    r = register_request(client, server_id, url, capacity)
    assert r.status_code == 200, r.text
    return r.json()


def server_state(client: httpx.Client, server_id: str) -> str:
    return next(s["state"] for s in client.get("/servers").json() if s["server_id"] == server_id)


def new_txn() -> str:
    return uuid.uuid4().hex



def digests_of(data: bytes, chunk: int = CHUNK) -> bytes:
    """The packed SHA-256 digests of ``data`` in ``chunk``-byte chunks, as a prepare sends them."""
    return b"".join(hashlib.sha256(data[i:i + chunk]).digest() for i in range(0, len(data), chunk))

def prepare(client: httpx.Client, path: str, data: bytes, txn_id: str | None = None, **params) -> httpx.Response:
    """``POST /txns`` for ``data`` cut into CHUNK-byte chunks."""
    digests = b"".join(hashlib.sha256(data[i:i + CHUNK]).digest() for i in range(0, len(data), CHUNK))
    query = {"txn_id": txn_id or new_txn(), "path": path, "size": len(data),
             "sha256": hashlib.sha256(data).hexdigest(), "chunk_size": CHUNK, "replication": 2, **params}
    return client.post("/txns", params=query, content=digests,
                       headers={"content-type": "application/octet-stream"})


def put(client: httpx.Client, path: str, data: bytes) -> dict:
    r = prepare(client, path, data)
    assert r.status_code == 201, r.text
    c = client.post(f"/txns/{r.json()['txn_id']}/commit")
    assert c.status_code == 200, c.text
    return c.json()


def assert_error(r: httpx.Response, status: int, contains: str = "") -> None:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"} and contains.lower() in body["error"].lower(), body


# ---------------------------------------------------------------- membership


def test_registration_is_stable_across_restart(start_leader, tmp_path):
    svc, client = start_leader()
    health = client.get("/healthz").json()
    assert {k: health[k] for k in ("status", "role", "epoch")} == {"status": "ok", "role": "active", "epoch": 0}
    if os.environ.get(PG_ENV):  # the election's term (leader/election.py); SQLite has one leader, no term
        assert health["term"] == 1 and health["active_leader"].endswith(f":{svc.port}")
    else:
        assert health["term"] is None and health["active_leader"] is None
    first = register(client, "cs-a", capacity=123)
    assert first["epoch"] == 1 and first["health_check_interval"] == 0.2
    ring = client.get("/ring").json()
    assert ring["epoch"] == 1 and ring["replication_factor"] == 2 and ring["chunk_size"] == CHUNK
    assert sorted(p for p, _ in ring["vnodes"]) == sorted(virtual_node_positions("cs-a", 8))
    assert client.get("/ring").headers["X-Ring-Epoch"] == "1"

    # A second server joins: epoch++; re-registering a known healthy server does not bump it.
    url_b = f"http://127.0.0.1:{free_port()}"
    assert register(client, "cs-b", url_b)["epoch"] == 2
    assert register(client, "cs-b", url_b, capacity=7)["epoch"] == 2
    ring = client.get("/ring").json()
    assert len(ring["vnodes"]) == 16
    cluster = client.get("/cluster").json()
    assert "vnodes" not in cluster and {s["server_id"] for s in cluster["servers"]} == {"cs-a", "cs-b"}

    svc.stop()
    svc2, client2 = start_leader()
    ring2 = client2.get("/ring").json()
    assert ring2["epoch"] == 2 and ring2["vnodes"] == [list(v) for v in ring["vnodes"]]
    assert client2.get("/healthz").headers["x-ring-epoch"] == "2"


def test_dead_server_becomes_unhealthy_then_removed_and_can_return(leader):
    dead_url = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    epoch = register(leader, "cs-dead", dead_url)["epoch"]
    wait_until(lambda: server_state(leader, "cs-dead") == "unhealthy", 10, what="unhealthy")
    wait_until(lambda: server_state(leader, "cs-dead") == "removed", 10, what="removed")
    ring = leader.get("/ring").json()
    assert ring["epoch"] == epoch + 1
    assert ring["vnodes"] == [] and ring["servers"][0]["missed_checks"] >= 5

    # Registering again makes it a member again (epoch++); it stays removed from health checks' view until
    # then, and comes back healthy.
    again = register(leader, "cs-dead", dead_url)
    assert again["epoch"] == epoch + 2
    assert server_state(leader, "cs-dead") in ("healthy", "unhealthy")
    assert len(leader.get("/ring").json()["vnodes"]) == 8


class FakeChunkServer:
    """A stand-in chunk server in a thread: answers ``GET /healthz`` with 200, proving ``key`` (set it once
    the leader issued one) over each challenge, and records the health-check header of every request."""

    def __init__(self, server_id: str) -> None:
        seen = self.seen = []
        self.key: bytes | None = None
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server API)
                challenge = self.headers.get(HEALTH_CHECK_HEADER)
                seen.append(challenge)
                answer = {"status": "ok", "server_id": server_id}
                if fake.key is not None and challenge:
                    answer["proof"] = health_proof(fake.key, server_id, challenge)
                body = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_healthy_server_stays_healthy_and_its_url_is_taken_over_only_once_it_stops_answering(leader):
    fake = FakeChunkServer("cs-live")
    try:
        result = register(leader, "cs-live", fake.url)
        epoch, fake.key = result["epoch"], bytes.fromhex(result["server_key"])
        wait_until(lambda: len(fake.seen) >= 3, 10, what="three health checks")
        assert all(fake.seen) and len(set(fake.seen)) == len(fake.seen)  # a fresh challenge every time
        assert server_state(leader, "cs-live") == "healthy"
        # A new id at a live member's URL is refused, and the member is not touched.
        r = register_request(leader, "cs-new", fake.url)
        assert r.status_code == 409 and "cs-live" in r.json()["error"], r.text
        assert server_state(leader, "cs-live") == "healthy" and leader.get("/ring").json()["epoch"] == epoch
        # A check whose proof is wrong (the answer is not from cs-live's own key) is a miss.
        fake.key = b"\0" * 32
        wait_until(lambda: server_state(leader, "cs-live") == "unhealthy", 10, what="wrong proofs seen")
        # Once the member no longer passes its checks, a newcomer at its URL replaces it (its data dir was
        # wiped): the old one is removed.
        assert register(leader, "cs-new", fake.url)["epoch"] == epoch + 1
        assert server_state(leader, "cs-live") == "removed"
        # The fake answers with server_id "cs-live", so checks of "cs-new" fail: it turns unhealthy.
        wait_until(lambda: server_state(leader, "cs-new") == "unhealthy", 10, what="id mismatch seen")
    finally:
        fake.close()


# ---------------------------------------------------------------- versions


def test_prepare_commit_abort_and_visibility(leader):
    data = b"x" * 2500
    r = prepare(leader, "/docs/a.txt", data)
    assert r.status_code == 201, r.text
    txn = r.json()
    assert txn["path"] == "docs/a.txt" and txn["version"] == 1 and txn["state"] == "pending"
    assert_error(leader.get("/stat", params={"path": "docs/a.txt"}), 404)  # pending is invisible

    info = leader.post(f"/txns/{txn['txn_id']}/commit").json()
    assert info["state"] == "committed" and info["chunks"] == 3 and info["size"] == 2500
    assert leader.post(f"/txns/{txn['txn_id']}/commit").json() == info  # idempotent
    assert_error(leader.post(f"/txns/{txn['txn_id']}/abort"), 409)

    m = decode_manifest(leader.get("/manifest", params={"path": "docs/a.txt"}).content)
    meta, digests = m.info.model_dump(), m.digests
    assert meta["version"] == 1 and len(digests) == 96
    assert digests[:32] == hashlib.sha256(data[:CHUNK]).digest()

    # A second version; an aborted third one never shows and its number is reused.
    assert put(leader, "docs/a.txt", b"second")["version"] == 2
    r3 = prepare(leader, "docs/a.txt", b"third")
    assert r3.json()["version"] == 3
    assert leader.post(f"/txns/{r3.json()['txn_id']}/abort").json() == {"txn_id": r3.json()["txn_id"], "aborted": True}
    assert_error(leader.post(f"/txns/{r3.json()['txn_id']}/commit"), 404)
    assert_error(leader.post(f"/txns/{r3.json()['txn_id']}/abort"), 404)
    assert leader.get("/stat", params={"path": "docs/a.txt"}).json()["version"] == 2
    assert leader.get("/stat", params={"path": "docs/a.txt", "version": 1}).json()["size"] == 2500
    versions = leader.get("/versions", params={"path": "docs/a.txt"}).json()
    assert [v["version"] for v in versions["versions"]] == [1, 2]

    # Reusing a txn id is a conflict; an empty file has no chunks.
    assert_error(prepare(leader, "docs/other", b"", txn_id=txn["txn_id"]), 409, "already used")
    empty = put(leader, "docs/empty", b"")
    assert empty["chunks"] == 0 and decode_manifest(leader.get("/manifest", params={"path": "docs/empty"}).content).digests == b""


def test_create_only(leader):
    first = prepare(leader, "c/file", b"one", create_only="true")
    second = prepare(leader, "c/file", b"two", create_only="true")
    assert first.status_code == second.status_code == 201
    assert leader.post(f"/txns/{first.json()['txn_id']}/commit").status_code == 200
    # The loser of the race is aborted at commit.
    assert_error(leader.post(f"/txns/{second.json()['txn_id']}/commit"), 412)
    assert_error(leader.post(f"/txns/{second.json()['txn_id']}/commit"), 404)
    # Now a live version exists: 412 at prepare.
    assert_error(prepare(leader, "c/file", b"three", create_only="true"), 412, "exists")
    # After a delete, create-only works again and takes the next version number.
    leader.delete("/files", params={"path": "c/file"})
    r = prepare(leader, "c/file", b"four", create_only="true")
    assert r.status_code == 201 and r.json()["version"] == 2  # the aborted loser's number is free again


def test_delete_tombstones(leader):
    put(leader, "d/f", b"1")
    put(leader, "d/f", b"2")
    answer = leader.delete("/files", params={"path": "d/f"}).json()
    assert answer.pop("deleted_at") > 0 and answer == {"path": "d/f", "deleted_versions": 2}
    for endpoint in ("/stat", "/manifest", "/versions"):
        assert_error(leader.get(endpoint, params={"path": "d/f"}), 404)
    assert_error(leader.delete("/files", params={"path": "d/f"}), 404)
    assert put(leader, "d/f", b"3")["version"] == 3


def test_pending_sweep(start_leader):
    _, client = start_leader(PENDING_TTL="1", SWEEP_INTERVAL="0.2")
    r = prepare(client, "s/p", b"abc")
    txn_id = r.json()["txn_id"]

    def swept() -> bool:
        return client.post(f"/txns/{txn_id}/abort").status_code == 404

    wait_until(swept, 10, what="pending version swept")
    assert_error(client.post(f"/txns/{txn_id}/commit"), 404)


def test_commit_of_a_swept_txn_is_gone(start_leader):
    """A pending version never committed is swept after PENDING_TTL; its commit (single or batch) then
    answers 410, distinct from a never-seen txn's 404, and its txn id cannot be prepared again (409)."""
    _, client = start_leader(PENDING_TTL="1", SWEEP_INTERVAL="0.2")
    data = f"to be swept {uuid.uuid4().hex}".encode()
    digest = hashlib.sha256(data).digest()
    r = prepare(client, "s/gone", data)
    assert r.status_code == 201, r.text
    txn_id = r.json()["txn_id"]

    def swept() -> bool:  # no side effect: the pending version references its chunk until it is swept
        gc = client.post("/gc/unreferenced", content=digest, headers={"content-type": "application/octet-stream"})
        return gc.content == digest

    assert not swept()
    wait_until(swept, 10, what="pending version swept")
    gone = client.post(f"/txns/{txn_id}/commit")
    assert_error(gone, 410, "expired")
    results = client.post("/txns/batch-commit", json={"txn_ids": [txn_id, "never-seen"]}).json()["results"]
    assert results[txn_id] == {"error": gone.json()["error"], "status": 410}
    assert results["never-seen"]["status"] == 404
    assert_error(client.post("/txns/never-seen/commit"), 404, "unknown")
    assert_error(client.get("/stat", params={"path": "s/gone"}), 404)
    assert_error(client.post(f"/txns/{txn_id}/abort"), 404)
    # The expired id is a reused id, alone or in a batch (the other section is recorded as usual).
    assert_error(prepare(client, "s/again", b"x", txn_id=txn_id), 409, "already used")
    sections = b""
    for tid in (txn_id, new_txn()):
        meta = json.dumps({"txn_id": tid, "path": "s/again", "size": 0, "sha256": "0" * 64}).encode()
        sections += len(meta).to_bytes(4, "big") + meta + (0).to_bytes(4, "big")
    results = client.post("/txns/batch", content=sections).json()["results"]
    assert results[txn_id] == {"error": f"txn_id {txn_id!r} was already used", "status": 409}
    assert [r.get("version") for r in results.values()] == [None, 1]


# ---------------------------------------------------------------- namespace


def test_list_direct_and_recursive(leader):
    put(leader, "l/a.txt", b"a" * 10)
    put(leader, "l/sub/b.txt", b"b" * 20)
    put(leader, "l/sub/deep/c.txt", b"c" * 30)
    put(leader, "l0", b"sibling that sorts right after 'l/'")
    put(leader, "l/gone", b"x")
    leader.delete("/files", params={"path": "l/gone"})
    prepare(leader, "l/pending", b"p")  # never committed

    listing = leader.get("/list", params={"folder": "/l/"}).json()
    assert listing["folder"] == "l"
    assert [(e["name"], e["type"], e["size"]) for e in listing["entries"]] == [("a.txt", "file", 10), ("sub", "dir", 50)]
    assert listing["entries"][0]["version"] == 1 and listing["entries"][1]["path"] == "l/sub"

    rec = leader.get("/list", params={"folder": "l", "recursive": "true"}).json()
    assert [e["path"] for e in rec["entries"]] == ["l/a.txt", "l/sub/b.txt", "l/sub/deep/c.txt"]
    assert all(e["type"] == "file" for e in rec["entries"])

    root = leader.get("/list").json()
    assert {e["name"] for e in root["entries"]} >= {"l", "l0"}
    assert_error(leader.get("/list", params={"folder": "nothing/here"}), 404)


def test_rename_file_and_folder(leader):
    put(leader, "r/one", b"1")
    put(leader, "r/one", b"11")
    assert leader.post("/rename", json={"src": "r/one", "dst": "r/two"}).json() == {"src": "r/one", "dst": "r/two", "renamed": 1}
    assert_error(leader.get("/stat", params={"path": "r/one"}), 404)
    assert [v["size"] for v in leader.get("/versions", params={"path": "r/two"}).json()["versions"]] == [1, 2]

    # Destination with old tombstones: the moved versions are renumbered above them.
    put(leader, "r/three", b"old")
    leader.delete("/files", params={"path": "r/three"})
    leader.post("/rename", json={"src": "r/two", "dst": "r/three"}).raise_for_status()
    assert [v["version"] for v in leader.get("/versions", params={"path": "r/three"}).json()["versions"]] == [2, 3]
    assert leader.get("/stat", params={"path": "r/three"}).json()["size"] == 2

    # Folder rename moves every live file below it.
    put(leader, "f/src/a", b"a")
    put(leader, "f/src/x/b", b"bb")
    assert leader.post("/rename", json={"src": "/f/src/", "dst": "f/dst/"}).json()["renamed"] == 2
    assert [e["path"] for e in leader.get("/list", params={"folder": "f", "recursive": True}).json()["entries"]] == [
        "f/dst/a", "f/dst/x/b"]
    assert_error(leader.get("/list", params={"folder": "f/src"}), 404)

    assert_error(leader.post("/rename", json={"src": "f/nope", "dst": "f/z"}), 404)
    assert_error(leader.post("/rename", json={"src": "f/dst", "dst": "r"}), 409, "exists")
    assert_error(leader.post("/rename", json={"src": "f/dst/a", "dst": "r/three"}), 409)
    assert_error(leader.post("/rename", json={"src": "f/dst", "dst": "f/dst/inner"}), 400, "itself")


# ---------------------------------------------------------------- bad input


def test_bad_inputs_are_4xx_json(leader):
    good = {"txn_id": "t1", "path": "b/f", "size": 5, "sha256": "0" * 64, "chunk_size": CHUNK}
    body = b"\0" * 32

    def post_txn(body=body, **changes):
        params = {k: v for k, v in {**good, **changes}.items() if v is not None}
        return leader.post("/txns", params=params, content=body)

    assert_error(post_txn(path="a//b"), 400, "empty segment")
    assert_error(post_txn(path="../x"), 400, "'..'")
    assert_error(post_txn(body=b"\0" * 31), 400, "digest body")
    assert_error(post_txn(body=b"\0" * 64), 400, "digest body")
    assert_error(post_txn(sha256="ABC"), 400, "sha256")
    assert_error(post_txn(sha256="G" * 64), 400, "sha256")
    assert_error(post_txn(chunk_size=10), 400, "chunk_size")
    assert_error(post_txn(size=-1), 400, "size")
    assert_error(post_txn(size="five"), 400, "size")
    assert_error(post_txn(txn_id="bad id!"), 400, "txn_id")
    assert_error(post_txn(txn_id=None), 400, "txn_id")
    assert_error(post_txn(replication=0), 400, "replication")
    assert_error(post_txn(create_only="maybe"), 400, "create_only")
    assert_error(leader.post("/txns/bad%20id/commit"), 400, "txn_id")
    assert_error(leader.post("/txns/unknown/commit"), 404)
    assert_error(leader.get("/stat", params={"path": "b/f", "version": "x"}), 400, "version")
    assert_error(leader.get("/stat", params={"path": "b/f", "version": 0}), 400, "version")
    assert_error(leader.get("/manifest"), 400, "path")
    assert_error(leader.get("/manifest", params={"path": "a\x01b"}), 400, "control")
    assert_error(leader.get("/list", params={"folder": "a//b"}), 400)
    assert_error(leader.delete("/files", params={"path": ""}), 400, "empty")
    assert_error(leader.post("/rename", json={"src": "a"}), 400, "dst")
    assert_error(leader.post("/rename", content=b"not json", headers={"content-type": "application/json"}), 400)
    assert_error(leader.post("/servers", json={"server_id": "x y", "advertise_url": "http://h:1", "capacity_bytes": 1}), 400)
    assert_error(leader.post("/servers", json={"server_id": "x", "advertise_url": "ftp://h", "capacity_bytes": 1}), 400)
    assert_error(leader.get("/nope"), 404)
    # Nothing above reached the store.
    assert_error(leader.get("/stat", params={"path": "b/f"}), 404)


def test_racing_writers_get_distinct_versions(leader):
    import concurrent.futures

    def one(i: int) -> int:
        with authed_client(base_url=leader.base_url, timeout=10) as c:
            return put(c, "race/file", str(i).encode())["version"]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        got = sorted(pool.map(one, range(24)))
    assert got == list(range(1, 25))
    assert len(leader.get("/versions", params={"path": "race/file"}).json()["versions"]) == 24


def test_concurrent_create_only_commits_have_one_winner(leader):
    import concurrent.futures

    txns = [prepare(leader, "co/race", str(i).encode(), create_only="true").json()["txn_id"] for i in range(6)]

    def commit(txn_id: str) -> int:
        with authed_client(base_url=leader.base_url, timeout=10) as c:
            return c.post(f"/txns/{txn_id}/commit").status_code

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        codes = sorted(pool.map(commit, txns))
    assert codes == [200] + [412] * 5
    assert len(leader.get("/versions", params={"path": "co/race"}).json()["versions"]) == 1
