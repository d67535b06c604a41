"""The leader's batch endpoints (``POST /txns/batch``, ``POST /txns/batch-commit``) and the user app's
coalesced phase-2 and phase-4 calls (``user_app.phases.PhaseCalls``), against real leader processes
(SQLite, or PostgreSQL with ``RINGFS_TEST_POSTGRES``, a fresh database per leader as tests/conftest.py
makes them).

The batch answers must be per txn exactly what the single endpoints answer, so most tests run one
scenario through the single endpoints and the same scenario through the batches and compare.
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
import uuid
from pathlib import Path

import httpx
import orjson
import pytest

from shared.errors import BadRequest, Conflict, NotFound, PreconditionFailed
from shared.protocol.manifests import decode_manifest
from tests.conftest import database_url_for
from tests.test_leader import CHUNK, FAST_ENV, digests_of, prepare, put
from user_app.client.local_cluster import Service, free_port
from tests.utils.auth import SIGNING_KEY, authed_client

pytestmark = pytest.mark.timeout(120)

TIME_KEYS = ("created_at", "committed_at", "deleted_at")


@pytest.fixture
def leader(tmp_path: Path):
    url = database_url_for(tmp_path)
    env = {"DATA_DIR": str(tmp_path / "leader"), **FAST_ENV, **({"DATABASE_URL": url} if url else {})}
    svc = Service("leader", "leader", free_port(), env, tmp_path / "leader.log").start()
    client = authed_client(base_url=svc.url, timeout=30)
    try:
        yield client
    finally:
        client.close()
        svc.stop()


def fields(path: str, data: bytes, txn_id: str | None = None, **extra) -> dict:
    return {"txn_id": txn_id or uuid.uuid4().hex, "path": path, "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(), "chunk_size": CHUNK, "replication": 2, **extra}


def section(meta, digests: bytes) -> bytes:
    raw = meta if isinstance(meta, bytes) else orjson.dumps(meta)
    return struct.pack(">I", len(raw)) + raw + struct.pack(">I", len(digests)) + digests


def batch_prepare(client: httpx.Client, sections: list[tuple[object, bytes]]) -> dict:
    r = client.post("/txns/batch", content=b"".join(section(m, d) for m, d in sections),
                    headers={"content-type": "application/octet-stream"})
    assert r.status_code == 200, r.text
    return r.json()["results"]


def batch_commit(client: httpx.Client, txn_ids: list[str]) -> dict:
    r = client.post("/txns/batch-commit", json={"txn_ids": txn_ids})
    assert r.status_code == 200, r.text
    return r.json()["results"]


def single_prepare(client: httpx.Client, meta: dict, digests: bytes) -> dict:
    """``POST /txns`` of a section's fields, answered in the batch's per-txn form."""
    params = {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in meta.items() if v is not None}
    r = client.post("/txns", params=params, content=digests, headers={"content-type": "application/octet-stream"})
    return r.json() if r.status_code == 201 else {**r.json(), "status": r.status_code}


def single_commit(client: httpx.Client, txn_id: str) -> dict:
    r = client.post(f"/txns/{txn_id}/commit")
    return r.json() if r.status_code == 200 else {**r.json(), "status": r.status_code}


def strip_times(result: dict) -> dict:
    return {k: v for k, v in result.items() if k not in TIME_KEYS}


# ---------------------------------------------------------------- POST /txns/batch

BAD_SECTIONS = [  # (fields overrides, digests override, expected status, message fragment)
    ({"path": "a//b"}, None, 400, "empty segment"),
    ({"path": "../x"}, None, 400, "'..'"),
    ({"sha256": "ABC"}, None, 400, "sha256"),
    ({"chunk_size": 10, "size": 0}, b"", 400, "chunk_size"),
    ({"chunk_size": 0}, None, 400, "chunk_size"),
    ({"size": "five"}, None, 400, "size"),
    ({"size": -1}, None, 400, "size"),
    ({"txn_id": "bad id!"}, None, 400, "txn_id"),
    ({"replication": 0}, None, 400, "replication"),
    ({"create_only": "maybe"}, None, 400, "create_only"),
    ({}, b"\0" * 31, 400, "digest body"),
    ({}, b"\0" * 96, 400, "digest body"),
]


def test_batch_prepare_mixed_sections_match_single_endpoint(leader):
    put(leader, "live/file", b"exists")
    data = b"x" * (CHUNK + 5)
    good = [fields("g/one", data), fields("g/two", b"")]
    bad = []
    for overrides, digests, status, fragment in BAD_SECTIONS:
        meta = {**fields("b/file", data), **overrides}
        bad.append((meta, digests_of(data) if digests is None else digests, status, fragment))
    missing_txn = {k: v for k, v in fields("b/m", data).items() if k != "txn_id"}
    create_only_live = fields("live/file", data, create_only=True)
    sections = [(good[0], digests_of(data))] + [(m, d) for m, d, _, _ in bad] + [
        (missing_txn, digests_of(data)), (b"not json", b""), (b"[1, 2]", b""),
        (create_only_live, digests_of(data)), (good[1], b"")]
    results = batch_prepare(leader, sections)
    keys = list(results)
    assert len(keys) == len(sections)

    assert results[good[0]["txn_id"]] == {"txn_id": good[0]["txn_id"], "path": "g/one", "version": 1,
                                          "state": "pending"}
    assert results[good[1]["txn_id"]]["version"] == 1
    for i, (meta, digests, status, fragment) in enumerate(bad, start=1):
        got = results[keys[i]]
        assert set(got) == {"error", "status"} and got["status"] == status and fragment in got["error"], (i, {k: v for k, v in meta.items() if k not in ("sha256",)}, got)
        # The single endpoint answers the same message for the same request (nothing was recorded).
        assert single_prepare(leader, meta, digests) == got
    assert results["#13"]["status"] == 400 and "txn_id" in results["#13"]["error"]
    assert single_prepare(leader, missing_txn, digests_of(data)) == results["#13"]
    assert results["#14"] == {"error": "batch section 14: not a JSON object", "status": 400}
    assert results["#15"]["status"] == 400
    got = results[create_only_live["txn_id"]]
    assert got["status"] == 412 and "exists" in got["error"]
    assert single_prepare(leader, create_only_live, digests_of(data)) == got
    # The good ones really are pending and commit normally.
    info = leader.post(f"/txns/{good[0]['txn_id']}/commit").json()
    assert info["version"] == 1 and info["chunks"] == 2 and info["state"] == "committed"


def test_batch_prepare_same_path_gets_consecutive_versions(leader):
    put(leader, "same/p", b"v1")
    secs = [fields("same/p", bytes([i]) * 3) for i in range(4)] + [fields("/same/q", b"q")]
    results = batch_prepare(leader, [(m, digests_of(b"\0" * m["size"])) for m in secs])
    assert [results[m["txn_id"]]["version"] for m in secs] == [2, 3, 4, 5, 1]
    assert results[secs[4]["txn_id"]]["path"] == "same/q"  # normalized as POST /txns does
    # The single endpoint continues the sequence.
    assert prepare(leader, "same/p", b"next").json()["version"] == 6


def test_batch_prepare_reused_txn_id_falls_back_per_section(leader):
    """A reused txn id makes the one-transaction insert fail; every section then goes alone (409 for the
    reused one only) and same-path sections still get distinct consecutive versions."""
    used = prepare(leader, "r/old", b"old").json()["txn_id"]
    secs = [fields("r/p", b"a"), fields("r/p", b"b"), fields("r/other", b"c", txn_id=used), fields("r/p", b"d")]
    results = batch_prepare(leader, [(m, digests_of(b"\0")) for m in secs])
    assert [results[m["txn_id"]].get("version") for m in secs] == [1, 2, None, 3]
    assert results[used] == {"error": f"txn_id {used!r} was already used", "status": 409}
    assert single_prepare(leader, secs[2], digests_of(b"\0")) == results[used]


def test_batch_prepare_bad_framing_and_limits(leader):
    one = section(fields("f/x", b""), b"")
    for body in (one[:3], one + b"\0\0", one[:-1] + struct.pack(">I", 99)):
        r = leader.post("/txns/batch", content=body)
        assert r.status_code == 400 and "batch section" in r.json()["error"], r.text
    r = leader.post("/txns/batch", content=one * 2)
    assert r.status_code == 400 and "twice" in r.json()["error"]
    many = b"".join(section(fields(f"f/{i}", b""), b"") for i in range(513))
    r = leader.post("/txns/batch", content=many)
    assert r.status_code == 400 and "512" in r.json()["error"]
    assert leader.post("/txns/batch", content=b"").json() == {"results": {}}
    r = leader.post("/txns/batch-commit", json={"txn_ids": ["a"] * 513})
    assert r.status_code == 400
    assert leader.post("/txns/batch-commit", content=b"nope").status_code == 400


# ---------------------------------------------------------------- POST /txns/batch-commit

def commit_scenario(client: httpx.Client, prefix: str) -> tuple[list[str], dict[str, str]]:
    """Txns in every state a commit meets, under ``prefix``; returns ``(txn_ids, names)``."""
    ids: dict[str, str] = {}
    ids["plain"] = prepare(client, f"{prefix}/plain", b"plain").json()["txn_id"]
    ids["plain_second"] = prepare(client, f"{prefix}/plain", b"plain2").json()["txn_id"]
    ids["other"] = prepare(client, f"{prefix}/other", b"o" * (2 * CHUNK + 1)).json()["txn_id"]
    done = prepare(client, f"{prefix}/done", b"done").json()["txn_id"]
    assert client.post(f"/txns/{done}/commit").status_code == 200
    ids["committed"] = done
    winner = prepare(client, f"{prefix}/co", b"w", create_only="true").json()["txn_id"]
    ids["co_lost"] = prepare(client, f"{prefix}/co", b"l", create_only="true").json()["txn_id"]
    assert client.post(f"/txns/{winner}/commit").status_code == 200
    ids["co_pending"] = prepare(client, f"{prefix}/co2", b"c", create_only="true").json()["txn_id"]
    aborted = prepare(client, f"{prefix}/ab", b"a").json()["txn_id"]
    assert client.post(f"/txns/{aborted}/abort").status_code == 200
    ids["aborted"] = aborted
    ids["unknown"] = f"unknown-{prefix}"
    ids["bad"] = "bad id!"
    return list(ids.values()), {v: k for k, v in ids.items()}


def normalized(results: dict[str, dict], names: dict[str, str], prefix: str) -> dict[str, dict]:
    out = {}
    for txn_id, result in results.items():
        result = strip_times(result)
        if "path" in result:
            result["path"] = "P" + result["path"].removeprefix(prefix)
        if "error" in result:
            result["error"] = result["error"].replace(txn_id, "T").replace(f"'{prefix}/", "'P/")
        out[names[txn_id]] = result
    return out


def test_batch_commit_matches_single_commits(leader):
    single_ids, single_names = commit_scenario(leader, "single")
    single = {t: single_commit(leader, t.replace(" ", "%20")) for t in single_ids}
    assert single["bad id!"]["status"] == 400
    batch_ids, batch_names = commit_scenario(leader, "batch")
    batch = batch_commit(leader, batch_ids)
    assert list(batch) == batch_ids
    assert normalized(batch, batch_names, "batch") == normalized(single, single_names, "single")
    by_name = {batch_names[t]: r for t, r in batch.items()}
    assert by_name["plain"]["version"] == 1 and by_name["plain_second"]["version"] == 2
    assert by_name["co_lost"]["status"] == 412 and by_name["unknown"]["status"] == 404
    assert by_name["co_pending"]["state"] == "committed"
    # Afterwards each single commit agrees: idempotent re-commits return the same info, the lost race
    # was aborted (404), as after single commits.
    for txn_id in batch_ids:
        if txn_id == "bad id!":
            continue
        again = single_commit(leader, txn_id)
        if batch_names[txn_id] == "co_lost":
            assert again["status"] == 404
        else:
            assert again == batch[txn_id]
    # A second batch commit of the same ids is idempotent too (and repeats are committed once).
    again = batch_commit(leader, batch_ids + batch_ids[:2])
    assert {t: r for t, r in again.items() if batch_names[t] not in ("co_lost", "bad")} == \
        {t: r for t, r in batch.items() if batch_names[t] not in ("co_lost", "bad")}


def test_manifest_fresh_after_batch_commit(leader):
    put(leader, "m/a", b"a1")
    put(leader, "m/b", b"b1")
    for path in ("m/a", "m/b"):  # fill the cache (latest and exact version)
        for _ in range(2):
            assert decode_manifest(leader.get("/manifest", params={"path": path}).content).info.version == 1
            assert leader.get("/stat", params={"path": path, "version": 1}).status_code == 200
    a2 = prepare(leader, "m/a", b"a2-new").json()["txn_id"]
    b2 = prepare(leader, "m/b", b"b2-new").json()["txn_id"]
    leader.delete("/files", params={"path": "m/b"})  # b2 is pending: it survives and becomes the latest
    c1 = prepare(leader, "m/c", b"c1", create_only="true").json()["txn_id"]
    assert leader.get("/manifest", params={"path": "m/c"}).status_code == 404  # cache a miss path too
    results = batch_commit(leader, [a2, b2, c1])
    assert [results[t]["version"] for t in (a2, b2, c1)] == [2, 2, 1]
    for path, data, version in (("m/a", b"a2-new", 2), ("m/b", b"b2-new", 2), ("m/c", b"c1", 1)):
        for _ in range(2):
            m = decode_manifest(leader.get("/manifest", params={"path": path}).content)
            meta, digests = m.info.model_dump(), m.digests
            assert meta["version"] == version and digests == digests_of(data)
            assert meta["sha256"] == hashlib.sha256(data).hexdigest()
            assert leader.get("/stat", params={"path": path}).json() == meta


# ---------------------------------------------------------------- user_app.phases (leader side)

def test_leader_batcher_coalesces_and_matches_single_calls(leader):
    from shared.protocol.models import VersionPrepare
    from shared.rpc.chunk_client import ChunkClient
    from shared.rpc.leader_client import LeaderClient
    from shared.rpc.transport import Transport
    from user_app.metrics import LEADER_REQUESTS
    from user_app.phases import PhaseCalls

    base_url = str(leader.base_url).rstrip("/")
    put(leader, "lb/existing", b"here")
    counter = {kind: LEADER_REQUESTS.labels(kind)._value.get() for kind in
               ("prepare", "prepare_batch", "commit", "commit_batch")}

    async def run() -> tuple[list[dict], int, dict]:
        transport = Transport(30, SIGNING_KEY)
        peers = LeaderClient(transport, base_url)
        sent: list[str] = []
        real_leader = peers.call

        async def counting_leader(method, path, **kw):
            sent.append(path)
            return await real_leader(method, path, **kw)

        peers.call = counting_leader  # counts every HTTP request to the leader
        batcher = PhaseCalls(ChunkClient(transport), peers)
        try:
            async def upload(i: int) -> dict:
                data = f"file {i}".encode() * 100
                prepared = await batcher.prepare_version(VersionPrepare(
                    txn_id=uuid.uuid4().hex, path=f"lb/f{i % 10}", size=len(data),
                    sha256=hashlib.sha256(data).hexdigest(), chunk_size=CHUNK, replication=2,
                    create_only=False), digests_of(data))
                assert prepared.state == "pending"
                info = await batcher.commit_version(prepared.txn_id)
                assert info.version == prepared.version and info.state == "committed"
                return info

            infos = await asyncio.gather(*(upload(i) for i in range(30)))
            requests = len(sent)

            # Errors: the same classes and messages as the single calls, whether alone or in a batch.
            async def commit_error(txn_id: str) -> tuple[type, str]:
                try:
                    await batcher.commit_version(txn_id)
                except Exception as exc:  # noqa: BLE001
                    return type(exc), str(exc)
                raise AssertionError("no error")

            unknown = await asyncio.gather(*(commit_error(f"nope{i}") for i in range(5)))
            single_unknown = await commit_error_single(peers, "nope0")
            assert unknown[0] == single_unknown and all(cls is NotFound for cls, _ in unknown)
            assert [msg for _, msg in unknown] == [single_unknown[1].replace("nope0", f"nope{i}") for i in range(5)]

            async def prepare_error(**overrides) -> tuple[type, str]:
                kw = {"txn_id": uuid.uuid4().hex, "path": "lb/existing", "size": 1, "sha256": "0" * 64,
                      "chunk_size": CHUNK, "replication": 2, "create_only": True, "digests": b"\0" * 32,
                      **overrides}
                digests = kw.pop("digests")
                try:
                    await batcher.prepare_version(VersionPrepare(**kw), digests)
                except Exception as exc:  # noqa: BLE001
                    return type(exc), str(exc)
                raise AssertionError("no error")

            reused = await batcher.prepare_version(VersionPrepare(
                txn_id="reused-1", path="lb/r", size=0, sha256="0" * 64, chunk_size=CHUNK, replication=2,
                create_only=False), b"")
            assert reused.version == 1
            errors = await asyncio.gather(prepare_error(), prepare_error(), prepare_error(path="a//b"),
                                          prepare_error(txn_id="reused-1", create_only=False))
            assert [cls for cls, _ in errors] == [PreconditionFailed, PreconditionFailed, BadRequest, Conflict]
            assert "already exists" in errors[1][1] and "empty segment" in errors[2][1]
            assert errors[3][1] == "txn_id 'reused-1' was already used"
            return infos, requests, {"sent": sent}
        finally:
            await batcher.aclose()
            await transport.aclose()

    async def commit_error_single(peers, txn_id: str) -> tuple[type, str]:
        try:
            await peers.rpc_commit_version(txn_id)
        except Exception as exc:  # noqa: BLE001
            return type(exc), str(exc)
        raise AssertionError("no error")

    infos, requests, extra = asyncio.run(run())
    kinds = {kind: LEADER_REQUESTS.labels(kind)._value.get() - n for kind, n in counter.items()}
    print(f"30 prepare+commit pairs: {requests} leader requests (single calls: 60); by kind {kinds}")
    assert requests < 60, extra["sent"]
    assert sum(kinds.values()) >= requests
    assert kinds["prepare_batch"] >= 1 and kinds["commit_batch"] >= 1
    # Every version is visible; each path got versions 1..3 exactly once (the batch kept them distinct).
    by_path: dict[str, list[int]] = {}
    for info in infos:
        by_path.setdefault(info.path, []).append(info.version)
        stat = leader.get("/stat", params={"path": info.path, "version": info.version})
        assert stat.status_code == 200 and stat.json()["sha256"] == info.sha256
    assert all(sorted(v) == [1, 2, 3] for v in by_path.values()) and len(by_path) == 10
    for path in by_path:
        assert leader.get("/stat", params={"path": path}).json()["version"] == 3
