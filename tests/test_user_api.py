"""The user web API contract, end to end on real processes: leader, 3 chunk servers, user app."""

from __future__ import annotations

from http.client import HTTPConnection
import json

import pytest

from tests.utils.data import random_bytes, sha256_hex
from user_app.client import Client, ClientError
from tests.utils.auth import ROOT, basic_header, http as signed_http

EDGE_SIZES = [0, 1, 1023, 1024, 1025, 3 * 1024 * 1024 + 17]



@pytest.mark.parametrize("size", EDGE_SIZES)
def test_edge_sizes_round_trip(client, http, size):
    data = random_bytes(size, seed=size)
    r = http.put(f"/files/edge/{size}.bin", content=data)
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"path", "version", "size", "sha256", "chunks", "replicas"} and body["replicas"] == 3
    assert body["size"] == size and body["sha256"] == sha256_hex(data)
    assert body["chunks"] == -(-size // 1024)
    got = http.get(f"/files/edge/{size}.bin")
    assert got.status_code == 200
    assert got.content == data
    assert got.headers["etag"] == f'"{sha256_hex(data)}"'
    assert got.headers["content-length"] == str(size)
    assert got.headers["accept-ranges"] == "bytes"


def test_head_has_headers_and_no_body(http):
    data = random_bytes(5000, seed=1)
    http.put("/files/head/x.bin", content=data)
    r = http.head("/files/head/x.bin")
    assert r.status_code == 200 and r.content == b""
    assert r.headers["content-length"] == "5000"
    assert r.headers["etag"] == f'"{sha256_hex(data)}"'


@pytest.mark.parametrize("header,expect", [
    ("bytes=0-0", (0, 0)), ("bytes=10-2047", (10, 2047)), ("bytes=1023-1024", (1023, 1024)),
    ("bytes=5000-", (5000, 9999)), ("bytes=-100", (9900, 9999)), ("bytes=9000-20000", (9000, 9999)),
    ("bytes=-20000", (0, 9999)),
])
def test_range_reads(http, header, expect):
    data = random_bytes(10_000, seed=2)
    http.put("/files/range/r.bin", content=data)
    r = http.get("/files/range/r.bin", headers={"Range": header})
    a, b = expect
    assert r.status_code == 206
    assert r.content == data[a : b + 1]
    assert r.headers["content-range"] == f"bytes {a}-{b}/10000"
    assert r.headers["content-length"] == str(b - a + 1)


@pytest.mark.parametrize("header", ["bytes=10000-", "bytes=20000-30000", "bytes=-0"])
def test_unsatisfiable_range_is_416(http, header):
    http.put("/files/range/u.bin", content=random_bytes(10_000, seed=3))
    r = http.get("/files/range/u.bin", headers={"Range": header})
    assert r.status_code == 416
    assert "error" in r.json()
    assert r.headers["content-range"] == "bytes */10000"


def test_versions_and_reading_an_older_version(client, http):
    v1, v2 = b"first version", b"second version, longer"
    assert client.put("ver/doc.txt", v1)["version"] == 1
    assert client.put("ver/doc.txt", v2)["version"] == 2
    assert client.get("ver/doc.txt") == v2
    assert client.get("ver/doc.txt", version=1) == v1
    vs = client.versions("ver/doc.txt")
    assert [v["version"] for v in vs] == [1, 2]
    assert [v["size"] for v in vs] == [len(v1), len(v2)]
    assert http.get("/files/ver/doc.txt", params={"version": 3}).status_code == 404
    assert http.get("/files/ver/doc.txt", params={"version": "x"}).status_code == 400


def test_create_only_put(http):
    assert http.put("/files/co/a.txt", content=b"a", headers={"If-None-Match": "*"}).status_code == 201
    r = http.put("/files/co/a.txt", content=b"b", headers={"If-None-Match": "*"})
    assert r.status_code == 412 and "error" in r.json()
    assert http.get("/files/co/a.txt").content == b"a"


def test_delete_then_404_then_new_put(client, http):
    client.put("del/a.txt", b"x")
    assert http.delete("/files/del/a.txt").status_code == 204
    assert http.get("/files/del/a.txt").status_code == 404
    assert http.head("/files/del/a.txt").status_code == 404
    assert http.delete("/files/del/a.txt").status_code == 404
    assert client.put("del/a.txt", b"y")["version"] >= 1
    assert client.get("del/a.txt") == b"y"


def test_stat(client):
    data = random_bytes(4097, seed=4)
    client.put("st/a.bin", data)
    st = client.stat("st/a.bin")
    assert {"path", "size", "version", "sha256", "chunks", "replication", "created_at"} <= set(st)
    assert st["path"] == "st/a.bin" and st["size"] == 4097 and st["chunks"] == 5 and st["replication"] == 3
    assert st["sha256"] == sha256_hex(data)


def test_list_direct_children_and_recursive(client, http):
    for p in ["ls/a.txt", "ls/b.txt", "ls/sub/c.txt", "ls/sub/deep/d.txt"]:
        client.put(p, p.encode())
    entries = {e["name"]: e for e in client.ls("ls")}
    assert set(entries) == {"a.txt", "b.txt", "sub"}
    assert entries["a.txt"]["type"] == "file" and entries["a.txt"]["size"] == len("ls/a.txt")
    assert entries["sub"]["type"] == "dir"
    rec = {e["path"] for e in client.ls("ls", recursive=True)}
    assert rec == {"ls/a.txt", "ls/b.txt", "ls/sub/c.txt", "ls/sub/deep/d.txt"}
    root = http.get("/list/").json()
    assert "ls" in {e["name"] for e in root["entries"]}
    assert http.get("/list/no/such/folder").status_code == 404


def test_rename(client, http):
    client.put("mv/src.txt", b"content")
    r = http.post("/rename", json={"src": "mv/src.txt", "dst": "mv/dst.txt"})
    assert r.status_code == 200, r.text
    assert http.get("/files/mv/src.txt").status_code == 404
    assert client.get("mv/dst.txt") == b"content"
    client.put("mv/other.txt", b"o")
    assert http.post("/rename", json={"src": "mv/other.txt", "dst": "mv/dst.txt"}).status_code == 409
    assert http.post("/rename", json={"src": "mv/none.txt", "dst": "mv/x.txt"}).status_code == 404
    assert http.post("/rename", json={"src": "mv/other.txt"}).status_code == 400


def test_locations_name_servers_that_hold_each_chunk(client, http, cluster):
    client.put("loc/a.bin", random_bytes(3000, seed=5))
    loc = http.get("/locations/loc/a.bin").json()
    assert [c["index"] for c in loc["chunks"]] == [0, 1, 2]
    urls = {s.url for s in cluster.servers}
    for c in loc["chunks"]:
        assert len(c["hash"]) == 64
        assert len(c["servers"]) == 3 and set(c["servers"]) <= urls


def test_cluster_lists_servers_epoch_and_policy(http, cluster):
    c = http.get("/cluster").json()
    assert c["replication_factor"] == 3 and c["chunk_size"] == 1024 and c["epoch"] >= 3
    assert {s["url"] for s in c["servers"]} == {s.url for s in cluster.servers}
    assert all(s["state"] == "healthy" for s in c["servers"])
    assert all(s["chunks"] >= 0 and s["disk_bytes"] > 0 and s["virtual_nodes"] == 64 for s in c["servers"])


def test_every_service_answers_healthz(cluster):
    for svc in cluster.services():
        assert signed_http.get(svc.url + "/healthz").status_code == 200


@pytest.mark.parametrize("bad", [
    "a//b", "a/%2E/b", "a/%2E%2E/b", "%2E%2E", "a/", "a%00b", "a%01b", "x" * 1025, "%C3%28",
])
def test_bad_paths_are_400_with_json_error(http, bad):
    for method in ("PUT", "GET", "DELETE"):
        r = http.request(method, f"/files/{bad}", content=b"x" if method == "PUT" else None)
        assert r.status_code == 400, (method, bad, r.status_code, r.text)
        assert isinstance(r.json()["error"], str) and r.json()["error"]


@pytest.mark.parametrize("raw", ["/files/a/../b", "/files/./a", "/files/.."])
def test_literal_dot_segments_are_400(cluster, raw):
    """httpx normalises dot segments away, so send the request line as a hostile client would."""
    conn = HTTPConnection("127.0.0.1", cluster.apps[0].port, timeout=10)
    conn.request("PUT", raw, body=b"x", headers={"Authorization": basic_header(*ROOT)})
    resp = conn.getresponse()
    assert resp.status == 400 and "error" in json.loads(resp.read())
    conn.close()


def test_unicode_and_spaces_in_paths(client):
    path = "docs/Ünïcødé folder/rapport d'été (final).txt"
    client.put(path, "bonjour".encode())
    assert client.get(path) == "bonjour".encode()
    assert any(e["name"] == "rapport d'été (final).txt" for e in client.ls("docs/Ünïcødé folder"))


def test_bad_bodies_and_parameters(http):
    assert http.put("/files/bb/a", content=b"x", params={"chunk_size": "abc"}).status_code == 400
    assert http.put("/files/bb/a", content=b"x", params={"chunk_size": 10}).status_code == 400
    assert http.put("/files/bb/a", content=b"x", headers={"If-None-Match": '"abc"'}).status_code == 400
    r = http.post("/rename", content=b"not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "error" in r.json()
    assert http.get("/files/bb/a").status_code == 404


def test_unknown_path_is_404_json(http):
    r = http.get("/files/nope/none.txt")
    assert r.status_code == 404 and "error" in r.json()
    assert http.get("/stat/nope/none.txt").status_code == 404
    assert http.get("/versions/nope/none.txt").status_code == 404


def test_per_upload_chunk_size(client):
    data = random_bytes(300_000, seed=6)
    r = client.put("big/chunky.bin", data, chunk_size=64 * 1024)
    assert r["chunks"] == 5
    assert client.get("big/chunky.bin") == data
    assert client.get("big/chunky.bin", byte_range=(65_000, 140_000)) == data[65_000:140_001]


def test_client_error_carries_status(client):
    with pytest.raises(ClientError) as e:
        client.get("nope/x")
    assert e.value.status == 404


@pytest.mark.parametrize("name,data", [
    ("zeros-10k", b"\0" * 10240),
    ("zeros-3m", b"\0" * (3 * 1024 * 1024 + 5)),
    ("repeated-block", bytes(range(256)) * 4 * 3000),
])
def test_files_with_repeated_chunks(client, name, data):
    """Repeated content (zero padding, sparse files) dedups to few distinct chunks, within a request and
    across pipelined pieces; the commit count check must agree."""
    r = client.put(f"repeat/{name}", data)
    assert r["size"] == len(data)
    assert client.get(f"repeat/{name}") == data


def test_same_content_uploaded_concurrently(cluster):
    """Two uploads of the same bytes at once share chunks; both commit and both read back."""
    from concurrent.futures import ThreadPoolExecutor

    data = random_bytes(200_000, seed=12)
    with ThreadPoolExecutor(8) as pool, Client(cluster.url) as c:
        results = list(pool.map(lambda i: c.put(f"same/{i}.bin", data), range(8)))
        assert all(r["sha256"] == sha256_hex(data) for r in results)
        assert all(c.get(f"same/{i}.bin") == data for i in range(8))


def test_docs_pages_serve_their_own_assets(http):
    """/docs and /redoc load Swagger UI and ReDoc from the user app itself, so they work without internet."""
    import re
    for page in ("/docs", "/redoc"):
        html = http.get(page)
        assert html.status_code == 200 and "text/html" in html.headers["content-type"]
        assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css|png))"', html.text)
        assert assets and all(a.startswith("/") for a in assets), assets  # nothing from a CDN
        for asset in assets:
            r = http.get(asset)
            assert r.status_code == 200 and len(r.content) > 1000, asset
    spec = http.get("/openapi.json").json()
    put = spec["paths"]["/files/{path}"]["put"]
    assert "application/octet-stream" in put["requestBody"]["content"]  # "Try it out" can upload
