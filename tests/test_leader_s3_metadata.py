"""Per-version object metadata (``etag``, ``content_type``, ``user_metadata``) and the server-side copy
(``POST /copy``), against real leader processes: SQLite, or PostgreSQL with ``RINGFS_TEST_POSTGRES`` (a
fresh database per leader, tests/conftest.py).

Metadata goes in with a prepare (``POST /txns`` query or a ``/txns/batch`` section), is kept on commit and
comes back wherever a :class:`VersionInfo` does: the commit answer, ``/stat``, ``/versions``, the
manifests, undelete. A copy is a new version of its destination that shares the source's chunk list
(the manifests' digests are compared), under the same conflict rules as a write.
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
from shared.protocol.manifests import decode_manifest, decode_manifests
from tests.conftest import database_url_for
from tests.test_leader import CHUNK, FAST_ENV, assert_error, digests_of, prepare
from tests.utils.auth import SIGNING_KEY, authed_client
from user_app.client.local_cluster import Service, free_port, wait_until

pytestmark = pytest.mark.timeout(120)

ETAG = "0123456789abcdef0123456789abcdef"
META = '{"zeta":"last","alpha":"caf\\u00e9 \\ud83d\\ude00","x-y_z.1":""}'
META_PARSED = {"alpha": "café 😀", "x-y_z.1": "", "zeta": "last"}


def start(tmp_path: Path, name: str = "leader", **env: str) -> tuple[Service, httpx.Client]:
    url = database_url_for(tmp_path / name)
    svc_env = {"DATA_DIR": str(tmp_path / name), **FAST_ENV, **({"DATABASE_URL": url} if url else {}), **env}
    svc = Service("leader", name, free_port(), svc_env, tmp_path / f"{name}.log").start()
    return svc, authed_client(base_url=svc.url, timeout=30)


@pytest.fixture
def leader(tmp_path: Path):
    svc, client = start(tmp_path)
    try:
        yield client
    finally:
        client.close()
        svc.stop()


def write(leader: httpx.Client, path: str, data: bytes, **params) -> dict:
    """Prepare and commit ``data`` at ``path`` (``params``: more ``VersionPrepare`` fields); the commit answer."""
    r = prepare(leader, path, data, **params)
    assert r.status_code == 201, r.text
    c = leader.post(f"/txns/{r.json()['txn_id']}/commit")
    assert c.status_code == 200, c.text
    return c.json()


def write_many(leader: httpx.Client, files: list[tuple[str, bytes]], **params) -> None:
    """Write ``files`` through ``/txns/batch`` and ``/txns/batch-commit``, 500 at a time."""
    for start_at in range(0, len(files), 500):
        group = files[start_at:start_at + 500]
        body, txn_ids = b"", []
        for path, data in group:
            txn_ids.append(uuid.uuid4().hex)
            meta = orjson.dumps({"txn_id": txn_ids[-1], "path": path, "size": len(data),
                                 "sha256": hashlib.sha256(data).hexdigest(), "chunk_size": CHUNK, "replication": 2,
                                 **params})
            digests = digests_of(data)
            body += struct.pack(">I", len(meta)) + meta + struct.pack(">I", len(digests)) + digests
        r = leader.post("/txns/batch", content=body, headers={"content-type": "application/octet-stream"})
        assert r.status_code == 200 and all("error" not in v for v in r.json()["results"].values()), r.text
        c = leader.post("/txns/batch-commit", json={"txn_ids": txn_ids})
        assert c.status_code == 200 and all("error" not in v for v in c.json()["results"].values()), c.text


def manifest(leader: httpx.Client, path: str, version: int | None = None):
    params = {"path": path} if version is None else {"path": path, "version": version}
    r = leader.get("/manifest", params=params)
    assert r.status_code == 200, r.text
    return decode_manifest(r.content)


def metadata_of(info: dict) -> tuple:
    return info["etag"], info["content_type"], info["user_metadata"]


# ---------------------------------------------------------------- 1. metadata


def test_metadata_is_stored_and_answered_everywhere(leader):
    committed = write(leader, "m/a.txt", b"hello", etag=ETAG, content_type="text/plain; charset=utf-8",
                      user_metadata=META)
    want = (ETAG, "text/plain; charset=utf-8", META_PARSED)
    assert metadata_of(committed) == want
    assert metadata_of(leader.get("/stat", params={"path": "m/a.txt"}).json()) == want
    assert metadata_of(manifest(leader, "m/a.txt").info.model_dump()) == want
    # A second version without metadata has none; the first keeps its own.
    second = write(leader, "m/a.txt", b"hello again")
    assert metadata_of(second) == (None, None, None)
    versions = leader.get("/versions", params={"path": "m/a.txt"}).json()["versions"]
    assert [metadata_of(v) for v in versions] == [want, (None, None, None)]
    assert metadata_of(leader.get("/stat", params={"path": "m/a.txt", "version": 1}).json()) == want
    assert metadata_of(manifest(leader, "m/a.txt", 1).info.model_dump()) == want
    r = leader.post("/manifests", json={"paths": ["m/a.txt"], "version": 1})
    [entry] = decode_manifests(r.content)
    assert metadata_of(entry.info.model_dump()) == want
    # A multipart entity tag, and metadata that survives delete + undelete.
    write(leader, "m/b.bin", b"x" * 3000, etag=ETAG + "-12", user_metadata="{}")
    assert metadata_of(leader.get("/stat", params={"path": "m/b.bin"}).json()) == (ETAG + "-12", None, {})
    assert leader.delete("/files", params={"path": "m/a.txt"}).status_code == 200
    restored = leader.post("/undelete", json={"path": "m/a.txt"}).json()["stat"]
    assert restored["version"] == 2 and metadata_of(restored) == (None, None, None)
    assert metadata_of(leader.get("/stat", params={"path": "m/a.txt", "version": 1}).json()) == want


def test_metadata_through_the_batch_endpoints(leader):
    write_many(leader, [(f"mb/{i}", f"data {i}".encode()) for i in range(3)], etag=ETAG, content_type="image/png",
               user_metadata=META)
    for i in range(3):
        assert metadata_of(leader.get("/stat", params={"path": f"mb/{i}"}).json()) == (ETAG, "image/png", META_PARSED)


@pytest.mark.parametrize("bad, message", [
    ("not json", "not valid JSON"),
    ('["a"]', "JSON object"),
    ('{"a": 1}', "must be a string"),
    ('{"a": null}', "must be a string"),
    ('{"Upper": "x"}', "lowercase"),
    ('{"has space": "x"}', "lowercase"),
    ('{"": "x"}', "1-128"),
    ('{"%s": "x"}' % ("k" * 129), "1-128"),
    ('{"k": "%s"}' % ("v" * 2048), "more than the 2048"),
    ('{"a": "line\\r\\nx-injected: 1"}', "control character"),
    ('{"a": "\\u0000"}', "control character"),
    ('{"a": "\\ud800"}', "not valid JSON"),
])
def test_bad_user_metadata_is_400(leader, bad, message):
    assert_error(prepare(leader, "bad/meta", b"x", user_metadata=bad), 400, message)
    # The same in a batch section: that section alone fails, with the same answer.
    meta = orjson.dumps({"txn_id": "t1", "path": "bad/meta", "size": 1, "sha256": hashlib.sha256(b"x").hexdigest(),
                         "chunk_size": CHUNK, "user_metadata": bad})
    digests = digests_of(b"x")
    body = struct.pack(">I", len(meta)) + meta + struct.pack(">I", len(digests)) + digests
    result = leader.post("/txns/batch", content=body, headers={"content-type": "application/octet-stream"})
    assert result.status_code == 200
    outcome = result.json()["results"]["t1"]
    assert outcome["status"] == 400 and message.lower() in outcome["error"].lower(), outcome
    assert_error(leader.get("/stat", params={"path": "bad/meta"}), 404)


def test_just_under_the_metadata_bound_is_accepted(leader):
    ok = orjson.dumps({"kk": "é" * 1023}).decode()  # 2 + 2046 = 2048 bytes, the bound itself
    assert write(leader, "ok/meta", b"x", user_metadata=ok)["user_metadata"] == {"kk": "é" * 1023}
    over = orjson.dumps({"kk": "é" * 1023 + "x"}).decode()  # 2049 bytes
    assert_error(prepare(leader, "ok/meta2", b"x", user_metadata=over), 400, "2049")


def test_object_headers_are_kept_per_version_and_checked(leader):
    headers = '{"x-amz-checksum-sha256":"AAAA","content-disposition":"inline","x-amz-checksum-type":"FULL_OBJECT"}'
    first = write(leader, "oh/a", b"one", object_headers=headers)
    want = {"content-disposition": "inline", "x-amz-checksum-sha256": "AAAA", "x-amz-checksum-type": "FULL_OBJECT"}
    assert first["object_headers"] == want
    assert manifest(leader, "oh/a").info.object_headers == want
    assert write(leader, "oh/a", b"two")["object_headers"] is None
    assert leader.get("/stat", params={"path": "oh/a", "version": 1}).json()["object_headers"] == want
    # a replacing copy takes the given headers but keeps the source's checksum: the bytes are the same
    r = copy(leader, "oh/a", "oh/b", src_version=1, metadata="replace", object_headers='{"cache-control":"no-store"}')
    assert r.status_code == 201 and r.json()["object_headers"] == {
        "cache-control": "no-store", "x-amz-checksum-sha256": "AAAA", "x-amz-checksum-type": "FULL_OBJECT"}
    assert copy(leader, "oh/a", "oh/c", src_version=1).json()["object_headers"] == want
    for bad, message in (('{"x-amz-meta-a": "1"}', "not one of"), ('{"expires": 5}', "must be a string"),
                         ('{"cache-control": "a\r\nb"}', "control character"), ("[]", "JSON object"),
                         ('{"content-disposition": "%s"}' % ("x" * 8200), "more than the 8192")):
        assert_error(prepare(leader, "oh/bad", b"x", object_headers=bad), 400, message)
        assert_error(copy(leader, "oh/a", "oh/bad", metadata="replace", object_headers=bad), 400, message)


@pytest.mark.parametrize("field, bad", [
    ("etag", "0123456789ABCDEF0123456789ABCDEF"), ("etag", ETAG[:31]), ("etag", ETAG + "-0"), ("etag", ETAG + "-"),
    ("etag", '"' + ETAG + '"'), ("content_type", "text/plain\n"), ("content_type", "é"), ("content_type", "x" * 256),
    ("content_type", ""),
])
def test_bad_etag_and_content_type_are_400(leader, field, bad):
    assert_error(prepare(leader, "bad/field", b"x", **{field: bad}), 400, field)


# ---------------------------------------------------------------- 4. copy


def copy(leader: httpx.Client, src: str, dst: str, **body) -> httpx.Response:
    return leader.post("/copy", json={"src": src, "dst": dst, **body})


def test_copy_shares_the_chunks_and_keeps_or_replaces_metadata(leader):
    data = bytes(range(256)) * 20  # 5 chunks
    src = write(leader, "c/src.bin", data, etag=ETAG, content_type="application/x-test", user_metadata=META)
    r = copy(leader, "c/src.bin", "c/dst.bin")
    assert r.status_code == 201, r.text
    info = r.json()
    assert info["path"] == "c/dst.bin" and info["version"] == 1 and info["state"] == "committed"
    for key in ("size", "sha256", "chunks", "chunk_size", "replication", "etag", "content_type", "user_metadata"):
        assert info[key] == src[key], key
    assert manifest(leader, "c/dst.bin").digests == manifest(leader, "c/src.bin").digests == digests_of(data)
    assert leader.get("/stat", params={"path": "c/dst.bin"}).json() == info

    replaced = copy(leader, "c/src.bin", "c/dst.bin", metadata="replace", content_type="text/csv",
                    user_metadata='{"b":"2","a":"1"}')
    assert replaced.status_code == 201, replaced.text
    assert replaced.json()["version"] == 2 and replaced.json()["etag"] == ETAG
    assert (replaced.json()["content_type"], replaced.json()["user_metadata"]) == ("text/csv", {"a": "1", "b": "2"})
    bare = copy(leader, "c/src.bin", "c/bare.bin", metadata="replace").json()
    assert (bare["etag"], bare["content_type"], bare["user_metadata"]) == (ETAG, None, None)

    # An older source version, and a copy onto the source itself, which makes a new version.
    write(leader, "c/src.bin", b"second version")
    old = copy(leader, "c/src.bin", "c/old.bin", src_version=1)
    assert old.status_code == 201 and manifest(leader, "c/old.bin").digests == digests_of(data)
    itself = copy(leader, "c/src.bin", "c/src.bin", src_version=1, metadata="replace", content_type="a/b")
    assert itself.status_code == 201 and itself.json()["version"] == 3, itself.text
    assert manifest(leader, "c/src.bin").digests == digests_of(data)
    assert leader.get("/stat", params={"path": "c/src.bin"}).json()["content_type"] == "a/b"


def test_copy_of_a_missing_or_deleted_source_is_404(leader):
    write(leader, "d/gone", b"soon deleted")
    write(leader, "d/kept", b"v1")
    assert leader.delete("/files", params={"path": "d/gone"}).status_code == 200
    assert_error(copy(leader, "d/gone", "d/x"), 404, "d/gone")
    assert_error(copy(leader, "d/gone", "d/x", src_version=1), 404, "version 1")
    assert_error(copy(leader, "d/never", "d/x"), 404)
    assert_error(copy(leader, "d/kept", "d/x", src_version=2), 404, "version 2")
    assert_error(leader.get("/stat", params={"path": "d/x"}), 404)


def test_copy_follows_the_conflict_rules_of_a_write(leader):
    src = write(leader, "k/src", b"source")
    write(leader, "k/file", b"a file")
    write(leader, "k/dir/inner", b"below")
    assert leader.post("/folders", json={"path": "k/explicit"}).status_code == 201
    assert_error(copy(leader, "k/src", "k/file/below"), 409, "'k/file' is a file")
    assert_error(copy(leader, "k/src", "k/dir"), 409, "is a folder")
    assert_error(copy(leader, "k/src", "k/explicit"), 409, "is a folder")
    assert_error(copy(leader, "k/src", "k/file", create_only=True), 412, "already exists")
    assert_error(copy(leader, "k/src", "k/file", if_match="a" * 64), 412, "If-Match failed")
    assert_error(copy(leader, "k/src", "k/new", if_match="*"), 412, "no live version")
    # None of the refused copies left a version or a pending row behind.
    assert [v["version"] for v in leader.get("/versions", params={"path": "k/file"}).json()["versions"]] == [1]
    assert_error(leader.get("/stat", params={"path": "k/new"}), 404)
    current = leader.get("/stat", params={"path": "k/file"}).json()["sha256"]
    ok = copy(leader, "k/src", "k/file", if_match=current)
    assert ok.status_code == 201 and ok.json()["version"] == 2 and ok.json()["sha256"] == src["sha256"]
    assert copy(leader, "k/src", "k/fresh", create_only=True).status_code == 201
    # Writing a file below a copied file is refused as below any file.
    assert_error(prepare(leader, "k/fresh/x", b"x"), 409, "'k/fresh' is a file")


@pytest.mark.parametrize("body, message", [
    ({"src": "k/src", "dst": "a//b"}, "empty segment"),
    ({"src": "", "dst": "k/x"}, "empty"),
    ({"src": "k/src", "dst": "k/x", "src_version": "1_0"}, "src_version"),
    ({"src": "k/src", "dst": "k/x", "src_version": 0}, "src_version"),
    ({"src": "k/src", "dst": "k/x", "metadata": "merge"}, "metadata"),
    ({"src": "k/src", "dst": "k/x", "if_match": "abc"}, "if_match"),
    ({"src": "k/src", "dst": "k/x", "metadata": "replace", "user_metadata": '{"A":"x"}'}, "lowercase"),
    ({"src": "k/src", "dst": "k/x", "metadata": "replace", "content_type": "a\tb"}, "content_type"),
    ({"dst": "k/x"}, "src"),
])
def test_bad_copy_requests_are_400(leader, body, message):
    write(leader, "k/src", b"source")
    assert_error(leader.post("/copy", json=body), 400, message)
    assert_error(leader.get("/stat", params={"path": "k/x"}), 404)


def test_copied_chunks_stay_referenced_after_the_source_is_purged(tmp_path):
    """The chunk-server GC asks ``/gc/unreferenced``: a copy's chunks must stay referenced once its source
    is deleted and purged from the trash, while a purged file without a copy frees its own."""
    svc, leader = start(tmp_path, SWEEP_INTERVAL="0.2", TRASH_RETENTION="0.3")
    try:
        shared_data, lone_data = b"S" * 3000 + b"shared", b"L" * 2000 + b"lonely"
        write(leader, "g/src", shared_data)
        write(leader, "g/lone", lone_data)
        assert copy(leader, "g/src", "g/copy").status_code == 201
        for path in ("g/src", "g/lone"):
            assert leader.delete("/files", params={"path": path}).status_code == 200
        wait_until(lambda: leader.get("/trash").json()["entries"] == [], timeout=10)
        asked = digests_of(shared_data) + digests_of(lone_data)
        r = leader.post("/gc/unreferenced", content=asked, headers={"content-type": "application/octet-stream"})
        assert r.status_code == 200
        assert r.content == digests_of(lone_data)  # only the lone file's chunks may go
        assert manifest(leader, "g/copy").digests == digests_of(shared_data)
    finally:
        leader.close()
        svc.stop()


def test_leader_client_copy(leader):
    from shared.rpc.leader_client import LeaderClient
    from shared.rpc.transport import Transport

    write(leader, "lc/src", b"abc" * 500, etag=ETAG, content_type="text/plain")
    write(leader, "lc/other", b"other")

    async def run():
        transport = Transport(30, SIGNING_KEY)
        client = LeaderClient(transport, str(leader.base_url))
        try:
            info = await client.rpc_copy("lc/src", "lc/dst")
            assert (info.path, info.version, info.etag, info.content_type) == ("lc/dst", 1, ETAG, "text/plain")
            replaced = await client.rpc_copy("lc/src", "lc/dst", metadata="replace", user_metadata='{"a":"b"}')
            assert replaced.version == 2 and replaced.content_type is None and replaced.user_metadata == {"a": "b"}
            with pytest.raises(NotFound):
                await client.rpc_copy("lc/none", "lc/dst")
            with pytest.raises(PreconditionFailed):
                await client.rpc_copy("lc/src", "lc/dst", create_only=True)
            with pytest.raises(Conflict):
                await client.rpc_copy("lc/src", "lc/dst/below")
            with pytest.raises(BadRequest):
                await client.rpc_copy("lc/src", "lc/x", metadata="replace", user_metadata="[]")
            stat = await client.rpc_stat("lc/dst", 1)
            assert stat.etag == ETAG and stat.user_metadata is None
            newer = await client.rpc_copy("lc/other", "lc/src")  # lc/src v2: other content
            older = await client.rpc_copy("lc/src", "lc/old", src_version=1)
            assert newer.version == 2 and newer.sha256 == hashlib.sha256(b"other").hexdigest()
            assert older.sha256 == stat.sha256 == hashlib.sha256(b"abc" * 500).hexdigest()
            with pytest.raises(NotFound):
                await client.rpc_copy("lc/src", "lc/x", src_version=9)
        finally:
            await transport.aclose()

    asyncio.run(run())
