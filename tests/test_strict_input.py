"""Strict input, end to end on real processes: numbers in query strings and ``Range`` (ASCII digits within
64 bits), RFC 9110 §14.2's ignored invalid ``Range``, NFC paths, refused control and bidi characters, and
one name never being a live file and a folder at once (409), on the user API and on the leader itself.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import unicodedata
import uuid

import pytest

from tests.utils.auth import authed_client
from tests.utils.data import random_bytes

CHUNK = 1024  # the test cluster's CHUNK_SIZE


def put_ok(http, path: str, data: bytes) -> dict:
    r = http.put(f"/files/{path}", content=data)
    assert r.status_code == 201, r.text
    return r.json()


def assert_error(r, status: int, contains: str = "") -> None:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"} and contains.lower() in body["error"].lower(), body


def prepare(leader, path: str, data: bytes, **params):
    """``POST /txns`` on the leader for ``data`` in CHUNK-byte chunks."""
    digests = b"".join(hashlib.sha256(data[i:i + CHUNK]).digest() for i in range(0, len(data), CHUNK))
    query = {"txn_id": uuid.uuid4().hex, "path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
             "chunk_size": CHUNK, "replication": 1, **params}
    return leader.post("/txns", params=query, content=digests, headers={"content-type": "application/octet-stream"})


def prepared(leader, path: str, data: bytes, **params) -> str:
    r = prepare(leader, path, data, **params)
    assert r.status_code == 201, r.text
    return r.json()["txn_id"]


# ---------------------------------------------------------------- numbers

BAD_NUMBERS = ["1_0", "+1", "-1", " 1", "1 ", "１", "٣", "1.0", "0x1", "", "9223372036854775808",
               "99999999999999999999999999"]


@pytest.mark.parametrize("raw", BAD_NUMBERS)
def test_version_must_be_ascii_digits_within_range(http, raw):
    for _ in range(10):  # ten versions, so "1_0" would name a real one if it were read as int() reads it
        put_ok(http, "num/ten.txt", b"v")
    for url in ("/files/num/ten.txt", "/stat/num/ten.txt", "/locations/num/ten.txt"):
        r = http.get(url, params={"version": raw})
        assert_error(r, 400, "version")
    assert http.get("/files/num/ten.txt", params={"version": "10"}).status_code == 200
    assert http.get("/files/num/ten.txt", params={"version": "0010"}).status_code == 200  # 1*DIGIT
    assert_error(http.get("/files/num/ten.txt", params={"version": str(2**31)}), 400, "version")


@pytest.mark.parametrize("raw", ["1_024", "+1024", "１０２４", "-1024", "18446744073709551616", "1024.0"])
def test_chunk_size_must_be_ascii_digits(http, raw):
    assert_error(http.put("/files/num/cs.bin", content=b"x", params={"chunk_size": raw}), 400, "chunk_size")
    assert http.get("/files/num/cs.bin").status_code == 404


@pytest.mark.parametrize("raw", ["1_0", "+1", "１", "9223372036854775808"])
def test_leader_query_numbers_are_strict_too(http, leader, raw):
    put_ok(http, "num/leader.txt", b"x")
    for endpoint in ("/stat", "/manifest"):
        assert_error(leader.get(endpoint, params={"path": "num/leader.txt", "version": raw}), 400, "version")
    for field in ("size", "chunk_size", "replication"):
        assert_error(prepare(leader, "num/prepared.txt", b"", **{field: raw}), 400, field)


# ---------------------------------------------------------------- Range (RFC 9110 §14.2)

@pytest.mark.parametrize("header", [
    "bytes=1_0-2_0", "bytes=+1-+2", "bytes=１-２", "bytes=1-２", "items=0-5", "bytes 0-5", "garbage", "bytes=5-1",
    "bytes=-", "bytes=0-99999999999999999999999", "bytes=1 - 2", "bytes=0-5,7-9",
])
def test_invalid_range_is_ignored(http, header):
    data = random_bytes(10_000, seed=21)
    put_ok(http, "rng/whole.bin", data)
    r = http.get("/files/rng/whole.bin", headers={"Range": header.encode()})  # fullwidth digits as UTF-8
    assert r.status_code == 200, (header, r.status_code)
    assert r.content == data and "content-range" not in r.headers


@pytest.mark.parametrize("header", ["bytes=10000-", "bytes=10000-10005", "bytes=-0"])
def test_valid_but_unsatisfiable_range_is_416(http, header):
    put_ok(http, "rng/u.bin", random_bytes(10_000, seed=22))
    r = http.get("/files/rng/u.bin", headers={"Range": header})
    assert_error(r, 416)
    assert r.headers["content-range"] == "bytes */10000"


def test_valid_ranges_still_work(http):
    data = random_bytes(10_000, seed=23)
    put_ok(http, "rng/ok.bin", data)
    for header, (a, b) in [("bytes=10-20", (10, 20)), ("BYTES=0-0", (0, 0)), ("bytes=-10", (9990, 9999)),
                           ("bytes=9990-", (9990, 9999)), ("bytes=00-01", (0, 1))]:
        r = http.get("/files/rng/ok.bin", headers={"Range": header})
        assert r.status_code == 206 and r.content == data[a:b + 1], header
        assert r.headers["content-range"] == f"bytes {a}-{b}/10000"


# ---------------------------------------------------------------- paths

def test_nfc_and_nfd_name_the_same_file(http):
    nfc = unicodedata.normalize("NFC", "uni/café.txt")
    nfd = unicodedata.normalize("NFD", "uni/café.txt")
    assert nfc != nfd
    first = put_ok(http, nfd, b"decomposed")
    assert first["path"] == nfc
    assert http.get(f"/files/{nfc}").content == b"decomposed"
    second = put_ok(http, nfc, b"composed")
    assert second["version"] == first["version"] + 1
    assert http.get(f"/files/{nfd}").content == b"composed"
    assert [e["name"] for e in http.get("/list/uni").json()["entries"]] == ["café.txt"]
    r = http.post("/rename", json={"src": nfd, "dst": unicodedata.normalize("NFD", "uni/déjà.txt")})
    assert r.status_code == 200, r.text
    assert r.json()["dst"] == unicodedata.normalize("NFC", "uni/déjà.txt")
    assert http.get("/files/uni/déjà.txt").content == b"composed"


@pytest.mark.parametrize("encoded", [
    "%C2%80", "%C2%85", "%C2%9F", "%7F", "%1B", "%E2%80%AA", "%E2%80%AE", "%E2%81%A6", "%E2%81%A9",
])
def test_control_and_bidi_characters_are_400(http, leader, encoded):
    raw = f"bad/x{encoded}txt.exe"
    for method in ("PUT", "GET", "DELETE"):
        r = http.request(method, f"/files/{raw}", content=b"x" if method == "PUT" else None)
        assert_error(r, 400, "character")
    put_ok(http, "bad/fine.txt", b"f")
    char = bytes.fromhex(encoded.replace("%", "")).decode()
    assert_error(http.post("/rename", json={"src": "bad/fine.txt", "dst": f"bad/{char}.txt"}), 400, "character")
    # The leader refuses it as well, whoever asks.
    assert_error(prepare(leader, f"bad/{char}", b""), 400, "character")
    assert_error(leader.get("/stat", params={"path": f"bad/{char}"}), 400, "character")
    assert_error(leader.post("/rename", json={"src": "bad/fine.txt", "dst": f"bad/{char}"}), 400, "character")


def test_nfc_on_the_leader(leader):
    nfd = unicodedata.normalize("NFD", "lnfc/ü.txt")
    r = prepare(leader, nfd, b"")
    assert r.status_code == 201 and r.json()["path"] == unicodedata.normalize("NFC", nfd)


# ---------------------------------------------------------------- a name is a file or a folder

def test_file_below_a_file_is_409(http):
    put_ok(http, "kind1/a", b"file a")
    for below in ("kind1/a/b", "kind1/a/b/c"):
        assert_error(http.put(f"/files/{below}", content=b"x"), 409, "'kind1/a' is a file")
        assert http.get(f"/files/{below}").status_code == 404
    assert http.get("/files/kind1/a").content == b"file a"
    # Once the file is gone, the folder may be made.
    assert http.delete("/files/kind1/a").status_code == 204
    put_ok(http, "kind1/a/b", b"now a folder")


def test_file_named_like_a_folder_is_409(http):
    put_ok(http, "kind2/x/y/z", b"deep")
    for name in ("kind2/x", "kind2/x/y"):
        assert_error(http.put(f"/files/{name}", content=b"x"), 409, "is a folder")
        assert http.get(f"/files/{name}").status_code == 404
    put_ok(http, "kind2/xy", b"a sibling whose name starts the same is fine")
    put_ok(http, "kind2/x0", b"so is the character after '/'")


def test_rename_respects_files_and_folders(http):
    put_ok(http, "kind3/file", b"f")
    put_ok(http, "kind3/other", b"o")
    put_ok(http, "kind3/dir/inside", b"i")
    assert_error(http.post("/rename", json={"src": "kind3/other", "dst": "kind3/file/other"}), 409, "is a file")
    assert_error(http.post("/rename", json={"src": "kind3/other", "dst": "kind3/dir"}), 409, "is a folder")
    assert_error(http.post("/rename", json={"src": "kind3/dir", "dst": "kind3/file/dir"}), 409, "is a file")
    assert http.get("/files/kind3/other").content == b"o"
    assert http.get("/files/kind3/dir/inside").content == b"i"


def test_batch_write_refuses_a_file_under_a_file(http, client):
    put_ok(http, "kind4/f", b"f")
    results = client.put_many([("kind4/f/g", b"g"), ("kind4/ok", b"ok")])
    assert results[0]["status"] == 409 and "is a file" in results[0]["error"]
    assert results[1]["version"] >= 1


def test_commit_checks_the_rule_again(leader):
    """Both writes pass their prepare (nothing is committed yet); the second commit is refused, in both
    directions, and its version is dropped."""
    for first, second, message in [("kc1/a", "kc1/a/b", "is a file"), ("kc2/a/b", "kc2/a", "is a folder")]:
        t1, t2 = prepared(leader, first, b"1"), prepared(leader, second, b"2")
        assert leader.post(f"/txns/{t1}/commit").status_code == 200
        assert_error(leader.post(f"/txns/{t2}/commit"), 409, message)
        assert_error(leader.post(f"/txns/{t2}/commit"), 404)  # aborted
        assert_error(leader.get("/stat", params={"path": second}), 404)
        # A prepare now fails fast.
        assert_error(prepare(leader, second, b"3"), 409, message)


def test_batch_commit_of_a_file_and_its_folder(leader):
    t1, t2 = prepared(leader, "kb/a", b"1"), prepared(leader, "kb/a/b", b"2")
    results = leader.post("/txns/batch-commit", json={"txn_ids": [t1, t2]}).json()["results"]
    assert results[t1]["state"] == "committed"
    assert results[t2]["status"] == 409 and "is a file" in results[t2]["error"]


def test_racing_commits_of_a_file_and_its_folder_have_one_winner(cluster, leader):
    """Concurrent commits of ``a`` and ``a/b``: exactly one commits, whatever the interleaving (on
    PostgreSQL the commits lock each other's rows)."""
    pairs = [(prepared(leader, f"kr/{i}", b"1"), prepared(leader, f"kr/{i}/b", b"2")) for i in range(12)]

    def commit(txn_id: str) -> int:
        with authed_client(base_url=cluster.leader_url, timeout=30) as c:
            return c.post(f"/txns/{txn_id}/commit").status_code

    order = [t for i, pair in enumerate(pairs) for t in (pair if i % 2 else pair[::-1])]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(commit, order))
    for i in range(len(pairs)):
        assert sorted(codes[2 * i : 2 * i + 2]) == [200, 409], (i, codes)
        files = [e["path"] for e in leader.get("/list", params={"folder": "kr", "recursive": True}).json()["entries"]
                 if e["path"] in (f"kr/{i}", f"kr/{i}/b")]
        assert len(files) == 1, files
