"""``POST /gc/unreferenced`` on a real leader process: which digests no pending, committed or trashed
version references (docs/failure-handling.md, "Garbage collection")."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import httpx
import pytest

from user_app.client.local_cluster import Service, free_port, wait_until
from tests.conftest import database_url_for
from tests.utils.auth import AUTH_ENV, authed_client

pytestmark = pytest.mark.timeout(60)

CHUNK = 1024
ENV = {**AUTH_ENV, "HEALTH_CHECK_INTERVAL": "0.5", "VIRTUAL_NODES": "8", "CHUNK_SIZE": str(CHUNK), "REPLICATION_FACTOR": "1",
       "SWEEP_INTERVAL": "0.2", "TRASH_RETENTION": "1", "PENDING_TTL": "600"}
OCTET = {"content-type": "application/octet-stream"}


@pytest.fixture
def leader(tmp_path: Path):
    env = {"DATA_DIR": str(tmp_path / "leader"), **ENV}
    url = database_url_for(tmp_path)  # a fresh PostgreSQL database under RINGFS_TEST_POSTGRES, else SQLite
    if url:
        env["DATABASE_URL"] = url
    svc = Service("leader", "leader", free_port(), env, tmp_path / "leader.log").start()
    with authed_client(base_url=svc.url, timeout=30) as client:
        yield client
    svc.stop()


def chunk(tag: str) -> tuple[bytes, bytes]:
    """A one-chunk file body and its digest, unique per test run."""
    data = f"{tag}-{uuid.uuid4().hex}".encode().ljust(CHUNK, b".")
    return data, hashlib.sha256(data).digest()


def prepare(client: httpx.Client, path: str, data: bytes) -> str:
    txn = uuid.uuid4().hex
    digests = b"".join(hashlib.sha256(data[i:i + CHUNK]).digest() for i in range(0, len(data), CHUNK))
    r = client.post("/txns", params={"txn_id": txn, "path": path, "size": len(data), "chunk_size": CHUNK,
                                     "sha256": hashlib.sha256(data).hexdigest(), "replication": 1},
                    content=digests, headers=OCTET)
    assert r.status_code == 201, r.text
    return txn


def put(client: httpx.Client, path: str, data: bytes) -> None:
    txn = prepare(client, path, data)
    assert client.post(f"/txns/{txn}/commit").status_code == 200


def unreferenced(client: httpx.Client, digests: list[bytes]) -> list[bytes]:
    r = client.post("/gc/unreferenced", content=b"".join(digests), headers=OCTET)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    return [r.content[i:i + 32] for i in range(0, len(r.content), 32)]


def test_pending_committed_and_trashed_versions_reference_their_chunks(leader):
    pending_data, pending = chunk("pending")
    committed_data, committed = chunk("committed")
    trashed_data, trashed = chunk("trashed")
    _, unknown = chunk("unknown")
    _, other = chunk("other")
    prepare(leader, "gc/pending.bin", pending_data)
    put(leader, "gc/committed.bin", committed_data)
    put(leader, "gc/trashed.bin", trashed_data)
    assert leader.delete("/files", params={"path": "gc/trashed.bin"}).status_code == 200

    assert unreferenced(leader, [unknown, pending, committed, trashed, other]) == [unknown, other]
    assert unreferenced(leader, [committed]) == []
    assert unreferenced(leader, []) == []


def test_chunks_become_unreferenced_after_abort_and_trash_purge(leader):
    pending_data, pending = chunk("aborted")
    trashed_data, trashed = chunk("purged")
    txn = prepare(leader, "gc/aborted.bin", pending_data)
    put(leader, "gc/purged.bin", trashed_data)
    assert unreferenced(leader, [pending, trashed]) == []

    assert leader.post(f"/txns/{txn}/abort").status_code == 200
    assert unreferenced(leader, [pending, trashed]) == [pending]

    assert leader.delete("/files", params={"path": "gc/purged.bin"}).status_code == 200
    assert unreferenced(leader, [trashed]) == []  # in the trash: still referenced
    # TRASH_RETENTION=1 s, purge every 0.2 s.
    wait_until(lambda: unreferenced(leader, [trashed]) == [trashed], 15, 0.1, "trash purge")
    assert leader.get("/trash").json()["entries"] == []


def test_a_shared_chunk_stays_referenced_while_any_version_holds_it(leader):
    data, digest = chunk("shared")
    put(leader, "gc/one.bin", data)
    put(leader, "gc/two.bin", data)
    assert leader.delete("/files", params={"path": "gc/one.bin"}).status_code == 200
    wait_until(lambda: leader.get("/trash").json()["entries"] == [], 15, 0.1, "trash purge")
    assert unreferenced(leader, [digest]) == []


def test_many_digests_in_one_request(leader):
    data, digest = chunk("many")
    put(leader, "gc/many.bin", data)
    many = [hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(200_000)]
    got = unreferenced(leader, many[:100_000] + [digest] + many[100_000:])
    assert got == many


@pytest.mark.parametrize("body", [b"\0" * 31, b"\0" * 33, b"x" * 65])
def test_a_body_not_a_multiple_of_32_bytes_is_400(leader, body):
    r = leader.post("/gc/unreferenced", content=body, headers=OCTET)
    assert r.status_code == 400 and "multiple of 32" in r.json()["error"]
