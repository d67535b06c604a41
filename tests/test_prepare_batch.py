"""Prepare batching: the txn-section framing, ``ChunkStore.prepare_many``, ``POST /chunks/prepare-many``
on a real chunk server process, and the coalesced phase-1 call (``user_app.phases.PhaseCalls``) against it."""

from __future__ import annotations

import asyncio
import contextlib
import os

import httpx
import pytest


from chunk_server.store import ChunkStore
from shared.errors import BadRequest, IntegrityFailure
from user_app.client.local_cluster import free_port
from shared.protocol.frames import encode_frames, encode_txn_sections, iter_frames, iter_txn_sections, sha256
from shared.protocol.models import PrepareResult
from shared.rpc.chunk_client import ChunkClient
from shared.rpc.leader_client import LeaderClient
from shared.rpc.transport import Transport
from user_app.metrics import PREPARE_REQUESTS
from user_app.phases import PhaseCalls
from tests.utils.servers import lone_chunk_server
from tests.utils.auth import SIGNING_KEY, authed_client

pytestmark = pytest.mark.timeout(60)


def chunk(n: int = 1024) -> tuple[bytes, bytes]:
    data = os.urandom(n)
    return sha256(data), data


# ---------------------------------------------------------------- protocol


def test_sections_round_trip():
    a, b = [chunk() for _ in range(3)], [chunk(10)]
    sections = [("txn-a", encode_frames(a)), ("B_2", encode_frames(b)), ("empty", b""), ("x" * 64, encode_frames(a[:1]))]
    body = encode_txn_sections(sections)
    decoded = list(iter_txn_sections(body))
    assert [(t, bytes(f)) for t, f in decoded] == sections
    assert [(d, bytes(x)) for d, x in iter_frames(decoded[0][1])] == a
    assert list(iter_txn_sections(b"")) == []


@pytest.mark.parametrize("cut", [1, 3, 5, 9, 20])
def test_sections_truncated(cut):
    body = encode_txn_sections([("txn", encode_frames([chunk(16)]))])
    with pytest.raises(BadRequest):
        list(iter_txn_sections(body[:-cut]))


@pytest.mark.parametrize("body", [
    b"\x00" + b"\x00\x00\x00\x00",                # empty txn id
    b"\x41" + b"a" * 65 + b"\x00\x00\x00\x00",   # 65 characters
    b"\x03a/b\x00\x00\x00\x00",                   # bad character
    b"\x03a\xffb\x00\x00\x00\x00",                # not ASCII
])
def test_sections_bad_txn_id(body):
    with pytest.raises(BadRequest):
        list(iter_txn_sections(body))


def test_encode_rejects_bad_txn_id():
    for bad in ("", "a b", "x" * 65):
        with pytest.raises(ValueError):
            encode_txn_sections([(bad, b"")])


# ---------------------------------------------------------------- store


def test_store_prepare_many(tmp_path):
    async def go():
        store = ChunkStore(tmp_path)
        try:
            old = chunk()
            await store.prepare("t0", [old])
            await store.commit(["t0"])
            a, b, shared = [chunk() for _ in range(5)], [chunk() for _ in range(3)], chunk()
            res = await store.prepare_many([
                ("ta", a + [a[0], shared, old]),   # repeated digest within the section, a dedup hit
                ("tb", b + [shared]),             # pending under ta too: still new for tb
                ("ta", a[1:3] + [chunk()]),       # ta again: only the new chunk counts
            ])
            assert [(r.stored, r.already_committed) for r in res] == [(6, 1), (4, 0), (1, 0)]
            assert await store.prepare_many([]) == []
            assert await store.commit(["ta", "tb"]) == {"ta": 7, "tb": 4}
            st = await store.stats()
            assert (st["chunks"], st["pending_chunks"], st["pending_txns"], st["pinned_chunks"]) == (1 + 5 + 3 + 1 + 1, 0, 0, 0)
            # prepare() is prepare_many of one section and keeps its result
            again = await store.prepare("tc", [old, chunk()])
            assert (again.stored, again.already_committed) == (1, 1)
        finally:
            store.close()

    asyncio.run(go())


# ---------------------------------------------------------------- chunk server


@pytest.fixture
def server(tmp_path):
    with lone_chunk_server(tmp_path) as svc:
        yield svc


@pytest.fixture
def client(server):
    with authed_client(base_url=server.url, timeout=10) as c:
        yield c


def test_prepare_many_bad_section_fails_alone(client):
    a, b, c = [chunk() for _ in range(4)], [chunk() for _ in range(2)], [chunk() for _ in range(3)]
    corrupt = [(b[0][0], b"\x00" + b[0][1][1:]), b[1]]
    body = encode_txn_sections([("ta", encode_frames(a)), ("tb", encode_frames(corrupt)), ("tc", encode_frames(c))])
    resp = client.post("/chunks/prepare-many", content=body)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["results"]["ta"] == {"stored": 4, "already_committed": 0}
    assert out["results"]["tc"] == {"stored": 3, "already_committed": 0}
    assert out["results"]["tb"]["status"] == 422 and "does not match" in out["results"]["tb"]["error"]
    assert [s.get("stored") for s in out["sections"]] == [4, None, 3]
    stats = client.get("/stats").json()
    assert (stats["pending_chunks"], stats["pending_txns"]) == (7, 2)  # nothing of tb stored
    committed = client.post("/chunks/commit", json={"txn_ids": ["ta", "tb", "tc"]}).json()["committed"]
    assert committed == {"ta": 4, "tb": 0, "tc": 3}


def test_prepare_many_repeated_txn_and_bad_frames(client):
    a = [chunk() for _ in range(3)]
    truncated = encode_frames([chunk()])[:-5]
    body = encode_txn_sections([("t1", encode_frames(a[:2])), ("t2", truncated), ("t1", encode_frames(a[1:]))])
    out = client.post("/chunks/prepare-many", content=body).json()
    assert out["results"]["t1"] == {"stored": 3, "already_committed": 0}
    assert out["results"]["t2"]["status"] == 400
    assert out["sections"][0] == {"stored": 2, "already_committed": 0}
    assert out["sections"][2] == {"stored": 1, "already_committed": 0}
    assert client.post("/chunks/commit", json={"txn_ids": ["t1"]}).json() == {"committed": {"t1": 3}}
    # a malformed section structure fails the whole request
    bad = client.post("/chunks/prepare-many", content=encode_txn_sections([("t3", encode_frames(a))])[:-1])
    assert bad.status_code == 400 and "error" in bad.json()
    assert client.post("/chunks/prepare-many", content=b"").json() == {"results": {}, "sections": []}


@contextlib.asynccontextmanager
async def phase_calls(timeout: float):
    """A user app's coalesced phase calls on their own transport (no leader is reached in these tests)."""
    transport = Transport(timeout, SIGNING_KEY)
    phases = PhaseCalls(ChunkClient(transport), LeaderClient(transport, "http://127.0.0.1:1"))
    try:
        yield phases
    finally:
        await phases.aclose()
        await transport.aclose()


def route_count(client, route: str) -> float:
    text = client.get("/metrics").text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("ringfs_http_requests_total{") and f'route="{route}"' in line and 'method="POST"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_batcher_coalesces_concurrent_prepares(server, client):
    txns = {f"txn-{i}": [chunk(10 * 1024) for _ in range(i % 3 + 1)] for i in range(20)}
    # one chunk shared by two txns and one already committed: counts stay exact through the batcher
    old = chunk()
    client.post("/chunks/prepare", params={"txn_id": "old"}, content=encode_frames([old]))
    client.post("/chunks/commit", json={"txn_ids": ["old"]})
    txns["txn-0"].append(old)
    txns["txn-1"].append(txns["txn-2"][0])
    corrupt_digest, _ = chunk()
    before = route_count(client, "/chunks/prepare") + route_count(client, "/chunks/prepare-many")
    counter_before = sum(PREPARE_REQUESTS.labels(e)._value.get() for e in ("prepare", "prepare-many"))

    async def go():
        async with phase_calls(timeout=10) as phases:
            results = await asyncio.gather(
                *(phases.prepare_chunks(server.url, t, [(d, memoryview(x)) for d, x in cs]) for t, cs in txns.items()),
                phases.prepare_chunks(server.url, "bad", [(corrupt_digest, memoryview(b"nope"))]),
                return_exceptions=True)
            # afterwards a lone call goes out on its own, as a plain prepare
            lone = await phases.prepare_chunks(server.url, "lone", [chunk()])
            return results, lone

    results, lone = asyncio.run(go())
    *good, bad = results
    assert isinstance(bad, IntegrityFailure)
    expected = {t: (len(cs) - (t == "txn-0"), int(t == "txn-0")) for t, cs in txns.items()}
    assert {t: (r.stored, r.already_committed) for t, r in zip(txns, good)} == expected
    assert lone == PrepareResult(stored=1, already_committed=0)

    after = route_count(client, "/chunks/prepare") + route_count(client, "/chunks/prepare-many")
    requests = after - before
    assert requests < 21, requests  # 22 prepares (20 + bad + lone)
    assert sum(PREPARE_REQUESTS.labels(e)._value.get() for e in ("prepare", "prepare-many")) - counter_before == requests
    print(f"\n22 prepare calls -> {requests:.0f} HTTP requests")
    committed = client.post("/chunks/commit", json={"txn_ids": [*txns, "bad", "lone"]}).json()["committed"]
    assert committed == {**{t: n for t, (n, _) in expected.items()}, "bad": 0, "lone": 1}


def test_batcher_bounds_requests(server, client, monkeypatch):
    import user_app.phases

    monkeypatch.setattr(user_app.phases, "MAX_PREPARE_SECTIONS", 4)
    before = route_count(client, "/chunks/prepare-many")

    async def go():
        async with phase_calls(timeout=10) as phases:
            return await asyncio.gather(*(phases.prepare_chunks(server.url, f"b{i}", [chunk()]) for i in range(13)))

    results = asyncio.run(go())
    assert all(r == PrepareResult(stored=1, already_committed=0) for r in results)
    assert route_count(client, "/chunks/prepare-many") - before >= 3  # 13 sections, at most 4 per request


def test_batcher_unreachable_server():
    from shared.errors import Unavailable

    async def go():
        async with phase_calls(timeout=2) as phases:
            url = f"http://127.0.0.1:{free_port()}"
            return await asyncio.gather(*(phases.prepare_chunks(url, f"u{i}", [chunk()]) for i in range(5)),
                                        return_exceptions=True)

    assert all(isinstance(r, Unavailable) for r in asyncio.run(go()))

