"""Batches of small files: the framing helpers, the leader's ``POST /manifests``, the user app's
``POST /batch/write`` / ``POST /batch/read``, and ``ringfs put -r`` / ``get -r`` built on them."""

from __future__ import annotations

import hashlib
import os
import random
import socket
import subprocess
import sys

import httpx
import orjson
import pytest

from shared.errors import BadRequest
from shared.protocol.batches import encode_batch_entries, encode_batch_files, iter_batch_entries, iter_batch_files
from shared.protocol.manifests import (
    Manifest, decode_manifest, decode_manifests, encode_manifest, encode_manifest_error, encode_manifests,
)
from shared.protocol.models import BatchError, VersionInfo
from user_app.multi_file import MAX_READ_FILE_SIZE, MAX_WRITE_BODY
from tests.utils.auth import ROOT, basic_header, http


# ------------------------------------------------------------------ framing helpers (no cluster)


def test_batch_files_round_trip_and_truncation():
    files = [("a/empty", b""), ("a/one", b"x"), ("ü/ñ.txt", os.urandom(3000)), ("b" * 1024, b"\0" * 5)]
    body = encode_batch_files(files)
    assert [(p.decode(), bytes(d)) for p, d in iter_batch_files(body)] == files
    assert list(iter_batch_files(b"")) == []
    for cut in (1, 3, 10, len(body) - 1):
        with pytest.raises(BadRequest):
            list(iter_batch_files(body[:cut]))
    with pytest.raises(ValueError):
        encode_batch_files([("x" * 70000, b"")])
    # a path that is not UTF-8 survives the framing as bytes, for the server to answer per file
    raw = b"\x00\x02\xff\xfe" + (1).to_bytes(8, "big") + b"z"
    assert [(p, bytes(d)) for p, d in iter_batch_files(raw)] == [(b"\xff\xfe", b"z")]


def test_batch_entries_round_trip_and_truncation():
    entries = [("a", 200, b"hello"), ("missing", 404, b'{"error":"no"}'), ("e", 200, b""), ("ü", 413, b"{}")]
    blob = encode_batch_entries(entries)
    assert [(p, s, bytes(d)) for p, s, d in iter_batch_entries(blob)] == entries
    for cut in (1, 2, 5, len(blob) - 1):
        with pytest.raises(BadRequest):
            list(iter_batch_entries(blob[:cut]))
    # an absurdly long path (echoed from a bad request) is cut to fit its u16 length
    (path, status, _), = iter_batch_entries(encode_batch_entries([("é" * 40000, 400, b"{}")]))
    assert status == 400 and len(path.encode()) <= 0xFFFF and set(path) == {"é"}


def _info(path: str, size: int, chunks: int) -> VersionInfo:
    return VersionInfo(path=path, version=3, size=size, sha256="0" * 64, chunks=chunks, chunk_size=1024,
                       replication=3, state="committed", created_at=1.0, committed_at=2.0)


def test_manifests_round_trip_and_truncation():
    meta = _info("a", 2048, 2)
    digests = hashlib.sha256(b"1").digest() + hashlib.sha256(b"2").digest()
    empty = _info("e", 0, 0)
    blob = encode_manifests([encode_manifest(meta, digests), encode_manifest_error("no such file", 404),
                             encode_manifest(empty, b"")])
    assert decode_manifests(blob) == [Manifest(meta, digests), BatchError(error="no such file", status=404),
                                      Manifest(empty, b"")]
    assert decode_manifests(b"") == []
    for cut in (2, 5, len(blob) - 1):
        with pytest.raises(BadRequest):
            decode_manifests(blob[:cut])
    # an entry whose digests are not whole 32-byte digests, or an error without a status
    for bad in (encode_manifest(meta, digests[:-1]), b"\xff" + orjson.dumps({"error": "x"})):
        with pytest.raises(BadRequest):
            decode_manifests(encode_manifests([bad]))


# ------------------------------------------------------------------ leader POST /manifests


def test_leader_manifests(cluster, client):
    client.put("man/a.txt", b"alpha" * 500)
    client.put("man/a.txt", b"alpha v2")
    client.put("man/empty", b"")
    paths = ["man/a.txt", "/man/empty", "man/nope", "a//b", 7, "man/a.txt"]
    r = http.post(cluster.leader_url + "/manifests", json={"paths": paths, "version": None})
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    got = decode_manifests(r.content)
    single = http.get(cluster.leader_url + "/manifest", params={"path": "man/a.txt"}).content
    assert got[0] == decode_manifest(single) == got[5]
    assert got[0].info.version == 2 and got[0].info.size == 8
    assert got[1].info.path == "man/empty" and got[1].digests == b""
    assert got[2].status == 404 and "man/nope" in got[2].error
    assert got[3].status == 400 and "empty segment" in got[3].error
    assert got[4].status == 400
    # a given version for every path; a path without it is a 404 entry
    old = decode_manifests(http.post(cluster.leader_url + "/manifests",
                                      json={"paths": ["man/a.txt", "man/empty"], "version": 1}).content)
    assert old[0].info.version == 1 and old[0].info.size == 2500
    assert old[1].info.version == 1
    assert http.post(cluster.leader_url + "/manifests", json={"paths": []}).content == b""
    # whole-request errors
    for body in ({"paths": ["x"] * 1025}, {"paths": "x"}, {"paths": ["x"], "version": 0}, [1]):
        assert http.post(cluster.leader_url + "/manifests", json=body).status_code == 400, body
    assert http.post(cluster.leader_url + "/manifests", content=b"not json").status_code == 400


# ------------------------------------------------------------------ user app batch write / read


def test_batch_write_and_read_300_files(cluster, client):
    rng = random.Random(7)
    files = [("bw/empty", b""), ("bw/one", b"1")]
    files += [(f"bw/d{i % 7}/f{i:03d}", rng.randbytes(rng.randrange(0, 12_000))) for i in range(298)]
    files.append(("bw/same-as-f000", files[2][1]))  # identical content: chunks shared
    client.put("bw/exists", b"already here")
    batch = files + [("bw//bad", b"x"), ("bw/exists", b"new content")]
    results = client.put_many(batch, create_only=True)
    assert len(results) == len(batch)
    for (path, data), r in zip(files, results):
        assert r == {"path": path, "version": 1, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                     "chunks": -(-len(data) // 1024), "replicas": 3}, r
    assert results[-2]["status"] == 400 and results[-2]["path"] == "bw//bad" and "empty segment" in results[-2]["error"]
    assert results[-1]["status"] == 412 and results[-1]["path"] == "bw/exists"
    assert client.get("bw/exists") == b"already here"  # the failed file changed nothing
    assert client.get("bw/d3/f003") == files[5][1]

    client.put("bw/big", b"\x01" * (MAX_READ_FILE_SIZE + 1))
    paths = [p for p, _ in files] + ["bw/missing", "bw/big", "bw//bad", "bw/exists"]
    got = client.get_many(paths)
    assert [p for p, _, _ in got] == paths
    for (path, data), (_, status, content) in zip(files, got):
        assert status == 200 and content == data, path
    assert got[-4][1] == 404 and b"no such file" in got[-4][2]
    assert got[-3][1] == 413 and b"GET /files/bw/big" in got[-3][2]
    assert got[-2][1] == 400
    assert got[-1] == ("bw/exists", 200, b"already here")


def test_batch_write_same_path_twice_and_plain_overwrite(client):
    results = client.put_many([("dup/x", b"first"), ("dup/y", b"y"), ("dup/x", b"second")])
    assert [(r["path"], r["version"]) for r in results] == [("dup/x", 1), ("dup/y", 1), ("dup/x", 2)]
    assert client.get("dup/x") == b"second" and client.get("dup/x", version=1) == b"first"
    again = client.put_many([("dup/y", b"y2")])  # not create-only: the next version
    assert again[0]["version"] == 2 and client.get_many(["dup/y"]) == [("dup/y", 200, b"y2")]


def test_batch_whole_request_errors(cluster):
    url = cluster.url
    assert http.post(url + "/batch/write", content=b"\x00\x05ab").status_code == 400  # truncated section
    too_many = encode_batch_files([(f"many/{i}", b"") for i in range(1025)])
    assert http.post(url + "/batch/write", content=too_many).status_code == 400
    assert http.post(url + "/batch/write", params={"chunk_size": 10}, content=encode_batch_files([("c/a", b"a")])).status_code == 400
    assert http.post(url + "/batch/write", params={"create_only": "maybe"}, content=b"").status_code == 400
    # an announced body over 64 MiB is refused before it is read
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(f"POST /batch/write HTTP/1.1\r\nHost: x\r\nAuthorization: {basic_header(*ROOT)}\r\n"
                  f"Content-Length: {MAX_WRITE_BODY + 1}\r\n\r\n".encode())
        assert s.recv(4096).startswith(b"HTTP/1.1 413")
    assert http.post(url + "/batch/write", content=b"").json() == {"results": []}
    assert http.post(url + "/batch/read", json={"paths": ["x"] * 1025}).status_code == 400
    assert http.post(url + "/batch/read", content=b"[").status_code == 400
    assert http.post(url + "/batch/read", json={"paths": []}).content == b""
    # a non-UTF-8 path fails only its own file
    raw = b"\x00\x02\xff\xfe" + (1).to_bytes(8, "big") + b"z" + encode_batch_files([("utf8/ok", b"ok")])
    results = http.post(url + "/batch/write", content=raw).json()["results"]
    assert results[0]["status"] == 400 and "UTF-8" in results[0]["error"]
    assert results[1]["path"] == "utf8/ok" and results[1]["version"] >= 1


# ------------------------------------------------------------------ ringfs put -r / get -r


def _ringfs(*args: str, url: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "user_app.client.cli", *args, "--url", url], capture_output=True,
                          timeout=120)


def test_cli_tree_round_trip(cluster, tmp_path):
    src = tmp_path / "src"
    rng = random.Random(11)
    for i in range(500):
        p = src / f"d{i % 9}" / f"f{i:03d}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rng.randbytes(rng.choice([0, 1, 10_240, rng.randrange(20_000)])))
    (src / "big").mkdir()
    (src / "big" / "a.bin").write_bytes(rng.randbytes(3 << 20))
    (src / "big" / "b.bin").write_bytes(rng.randbytes(3 << 20))
    r = _ringfs("put", "-r", str(src), "tree", url=cluster.url)
    assert r.returncode == 0, r.stderr
    dst = tmp_path / "dst"
    r = _ringfs("get", "-r", "tree", str(dst), url=cluster.url)
    assert r.returncode == 0, r.stderr
    want = sorted(p.relative_to(src) for p in src.rglob("*") if p.is_file())
    have = sorted(p.relative_to(dst) for p in dst.rglob("*") if p.is_file())
    assert want == have and len(want) == 502
    assert all((src / p).read_bytes() == (dst / p).read_bytes() for p in want)

    # per-file errors: one line each, exit 1, the rest still copies
    (src / "d0" / "new.txt").write_bytes(b"new file")
    r = _ringfs("put", "-r", "--create-only", str(src / "d0"), "tree/d0", url=cluster.url)
    assert r.returncode == 1
    lines = [line for line in r.stderr.decode().splitlines() if line.startswith("error:")]
    assert len(lines) == len(list((src / "d0").iterdir())) - 1 and all("HTTP 412" in line for line in lines)
    assert http.get(cluster.url + "/files/tree/d0/new.txt").content == b"new file"


def test_byte_budget_fifo_oversize_and_cancel():
    import asyncio

    from user_app.byte_budget import ByteBudget

    async def main() -> None:
        b = ByteBudget(10)
        a = await b.acquire(6)
        order: list[str] = []

        async def take(name: str, n: int) -> int:
            got = await b.acquire(n)
            order.append(name)
            return got

        big = asyncio.create_task(take("big", 50))  # more than the limit: waits until idle, then takes all
        small = asyncio.create_task(take("small", 1))  # would fit, but arrived after big: first come first served
        gone = asyncio.create_task(take("gone", 1))
        await asyncio.sleep(0)
        gone.cancel()
        await asyncio.sleep(0)
        assert order == [] and b.used == 6
        b.release(a)
        assert await big == 10 and b.used == 10
        await asyncio.sleep(0)
        assert order == ["big"]
        b.release(10)
        assert await small == 1 and order == ["big", "small"] and b.used == 1
        assert gone.cancelled()

    asyncio.run(main())
