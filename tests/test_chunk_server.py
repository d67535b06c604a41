"""The chunk server as a real process (``python -m chunk_server``), driven over HTTP."""

from __future__ import annotations

import os

import httpx
import pytest


from user_app.client.local_cluster import wait_until
from shared.protocol.frames import ChunkPresence, MISSING, encode_frames, iter_frames, pack_digests, sha256
from tests.utils.servers import lone_chunk_server
from tests.utils.auth import authed_client, http

pytestmark = pytest.mark.timeout(60)


def chunk(n: int = 1024) -> tuple[bytes, bytes]:
    data = os.urandom(n)
    return sha256(data), data


@pytest.fixture
def server(tmp_path):
    with lone_chunk_server(tmp_path, PENDING_TTL="1", SWEEP_INTERVAL="0.2") as svc:
        yield svc


@pytest.fixture
def client(server):
    with authed_client(base_url=server.url, timeout=10) as c:
        yield c


def prepare(client, txn_id, chunks, **kw):
    return client.post("/chunks/prepare", params={"txn_id": txn_id}, content=encode_frames(chunks), **kw)


def read(client, digests):
    resp = client.post("/chunks/read", content=pack_digests(digests))
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/octet-stream"
    return [(d, None if data is None else bytes(data)) for d, data in iter_frames(resp.content)]


def test_healthz_and_stable_server_id(server, client):
    body = client.get("/healthz").json()
    assert body["status"] == "ok" and body["server_id"].startswith("cs-")
    assert client.get("/healthz", headers={"X-RingFS-Health-Check": "leader"}).status_code == 200
    server.stop()
    server.start()
    assert http.get(server.url + "/healthz").json()["server_id"] == body["server_id"]


def test_prepare_commit_read_round_trip(client):
    chunks = [chunk() for _ in range(200)] + [chunk(1), chunk(70_000)]
    digests = [d for d, _ in chunks]
    resp = prepare(client, "txn-1", chunks)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"stored": 202, "already_committed": 0}
    assert read(client, digests[:3]) == [(d, None) for d in digests[:3]]  # pending is invisible
    assert client.post("/chunks/commit", json={"txn_ids": ["txn-1"]}).json() == {"committed": {"txn-1": 202}}
    absent = b"\x01" * 32
    assert read(client, digests + [absent]) == chunks + [(absent, None)]
    assert client.get(f"/chunks/{digests[0].hex()}").content == chunks[0][1]
    assert client.get(f"/chunks/{absent.hex()}").status_code == 404

    again = prepare(client, "txn-2", chunks[:2] + [chunk()]).json()
    assert again == {"stored": 1, "already_committed": 2}
    assert client.post("/chunks/abort", json={"txn_ids": ["txn-2"]}).json() == {"aborted": {"txn-2": 1}}

    stats = client.get("/stats").json()
    assert stats["chunks"] == 202 and stats["bytes"] == 200 * 1024 + 1 + 70_000
    assert stats["pending_chunks"] == 0 and stats["pending_txns"] == 0
    assert stats["disk_bytes"] > stats["bytes"] and stats["server_id"].startswith("cs-")


def test_exists_bytes(client):
    committed, pending, absent = chunk(), chunk(), chunk()
    prepare(client, "a", [committed])
    client.post("/chunks/commit", json={"txn_ids": ["a"]})
    prepare(client, "b", [pending])
    resp = client.post("/chunks/exists", content=pack_digests([committed[0], pending[0], absent[0]]))
    assert resp.content == bytes([ChunkPresence.COMMITTED, ChunkPresence.PENDING, ChunkPresence.ABSENT])


def test_digest_mismatch_stores_nothing(client):
    good = chunk()
    bad_digest, _ = chunk()
    resp = prepare(client, "t", [good, (bad_digest, os.urandom(1024))])
    assert resp.status_code == 422 and "error" in resp.json()
    assert client.post("/chunks/exists", content=good[0]).content == bytes([ChunkPresence.ABSENT])
    assert client.get("/stats").json()["pending_chunks"] == 0


@pytest.mark.parametrize("method,path,kwargs", [
    ("GET", "/chunks/not-hex", {}),
    ("GET", "/chunks/" + "AB" * 32, {}),
    ("POST", "/chunks/prepare", {"params": {"txn_id": "bad id!"}, "content": b""}),
    ("POST", "/chunks/prepare", {"params": {"txn_id": "x" * 65}, "content": b""}),
    ("POST", "/chunks/prepare", {"content": b""}),
    ("POST", "/chunks/prepare", {"params": {"txn_id": "t"}, "content": b"\0" * 20}),  # truncated header
    ("POST", "/chunks/prepare", {"params": {"txn_id": "t"}, "content": b"\0" * 32 + b"\0\0\0\x10" + b"x"}),
    ("POST", "/chunks/prepare", {"params": {"txn_id": "t"}, "content": b"\0" * 32 + MISSING.to_bytes(4, "big")}),
    ("POST", "/chunks/commit", {"json": {"txn_ids": ["ok", "not ok"]}}),
    ("POST", "/chunks/commit", {"json": {"txn_id": "x"}}),
    ("POST", "/chunks/abort", {"content": b"{not json", "headers": {"content-type": "application/json"}}),
    ("POST", "/chunks/abort", {"json": {"txn_ids": "abc"}}),
    ("POST", "/chunks/read", {"content": b"\0" * 33}),
    ("POST", "/chunks/exists", {"content": b"\0" * 31}),
])
def test_bad_input_is_400_json(client, method, path, kwargs):
    resp = client.request(method, path, **kwargs)
    assert resp.status_code == 400, resp.text
    assert isinstance(resp.json()["error"], str)


def test_too_many_digests_is_413(client):
    resp = client.post("/chunks/read", content=b"\0" * (32 * 65537))
    assert resp.status_code == 413 and "error" in resp.json()


def test_pending_is_swept_after_ttl(client):
    c = chunk()
    assert prepare(client, "slow", [c]).status_code == 200

    def swept() -> bool:
        return client.post("/chunks/exists", content=c[0]).content == bytes([ChunkPresence.ABSENT])

    wait_until(swept, timeout=15, what="pending chunk swept")
    assert client.post("/chunks/commit", json={"txn_ids": ["slow"]}).json() == {"committed": {"slow": 0}}
    assert client.get("/stats").json()["pending_txns"] == 0


def test_data_survives_kill_9(server, client):
    chunks = [chunk() for _ in range(100)]
    prepare(client, "t", chunks)
    assert client.post("/chunks/commit", json={"txn_ids": ["t"]}).status_code == 200
    server.kill()
    server.start()
    with authed_client(base_url=server.url, timeout=10) as fresh:
        assert read(fresh, [d for d, _ in chunks]) == chunks
        assert fresh.get("/stats").json()["chunks"] == 100
