"""Conditional requests (RFC 9110 §13) on real processes: ``If-Match`` on PUT and DELETE (412, checked by
the leader atomically with the commit or the delete), ``If-None-Match`` / ``If-Modified-Since`` on GET and
HEAD (304), ``If-Match`` on GET (412), and ``Last-Modified``.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime, parsedate_to_datetime

import pytest

from tests.utils.auth import authed_client
from tests.utils.data import random_bytes, sha256_hex

CHUNK = 1024  # the test cluster's CHUNK_SIZE


def etag(data: bytes) -> str:
    return f'"{sha256_hex(data)}"'


def put_ok(http, path: str, data: bytes, **headers) -> dict:
    r = http.put(f"/files/{path}", content=data, headers=headers)
    assert r.status_code == 201, r.text
    assert r.headers["etag"] == etag(data)
    return r.json()


def assert_error(r, status: int, contains: str = "") -> None:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"} and contains.lower() in body["error"].lower(), body


def prepared(leader, path: str, data: bytes, **params) -> str:
    digests = b"".join(hashlib.sha256(data[i:i + CHUNK]).digest() for i in range(0, len(data), CHUNK))
    query = {"txn_id": uuid.uuid4().hex, "path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
             "chunk_size": CHUNK, "replication": 1, **params}
    r = leader.post("/txns", params=query, content=digests, headers={"content-type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    return r.json()["txn_id"]


# ---------------------------------------------------------------- If-Match on PUT

def test_put_if_match(http):
    v1, v2, v3 = b"one", b"two", b"three"
    put_ok(http, "im/doc.txt", v1)
    put_ok(http, "im/doc.txt", v2, **{"If-Match": etag(v1) + ", " + etag(b"other")})  # a list: one matches
    # The ETag v1 is stale now: a lost update is refused and nothing changes.
    assert_error(http.put("/files/im/doc.txt", content=v3, headers={"If-Match": etag(v1)}), 412, "If-Match")
    assert http.get("/files/im/doc.txt").content == v2
    assert [v["version"] for v in http.get("/versions/im/doc.txt").json()["versions"]] == [1, 2]
    # Strong comparison: a weak tag never matches (RFC 9110 §13.1.1).
    assert_error(http.put("/files/im/doc.txt", content=v3, headers={"If-Match": "W/" + etag(v2)}), 412)
    put_ok(http, "im/doc.txt", v3, **{"If-Match": "*"})
    assert http.get("/files/im/doc.txt").content == v3


def test_put_if_match_star_needs_a_live_version(http):
    assert_error(http.put("/files/im/none.txt", content=b"x", headers={"If-Match": "*"}), 412, "no live version")
    assert http.get("/files/im/none.txt").status_code == 404
    put_ok(http, "im/gone.txt", b"x")
    assert http.delete("/files/im/gone.txt").status_code == 204
    assert_error(http.put("/files/im/gone.txt", content=b"y", headers={"If-Match": etag(b"x")}), 412)


@pytest.mark.parametrize("header", ['abc', '"unterminated', '*, "x"', 'W/abc', '""x'])
def test_malformed_if_match_is_400(http, header):
    put_ok(http, "im/bad.txt", b"b")
    assert_error(http.put("/files/im/bad.txt", content=b"c", headers={"If-Match": header}), 400, "If-Match")
    assert_error(http.delete("/files/im/bad.txt", headers={"If-Match": header}), 400, "If-Match")
    assert http.get("/files/im/bad.txt").content == b"b"


def test_commit_checks_if_match_atomically(cluster, leader):
    """Two conditional writes prepared against the same live version: whichever commits first wins, the
    other is refused at its commit (412) and dropped, however the commits interleave."""
    first = b"base"
    base_txn = prepared(leader, "ima/f", first)
    assert leader.post(f"/txns/{base_txn}/commit").status_code == 200
    sha = hashlib.sha256(first).hexdigest()
    a, b = prepared(leader, "ima/f", b"A", if_match=sha), prepared(leader, "ima/f", b"B", if_match=sha)
    assert leader.post(f"/txns/{b}/commit").status_code == 200
    assert_error(leader.post(f"/txns/{a}/commit"), 412, "If-Match")
    assert_error(leader.post(f"/txns/{a}/commit"), 404)  # aborted
    assert leader.get("/stat", params={"path": "ima/f"}).json()["sha256"] == hashlib.sha256(b"B").hexdigest()
    # A prepare against a stale ETag now fails fast.
    r = leader.post("/txns", params={"txn_id": uuid.uuid4().hex, "path": "ima/f", "size": 0, "sha256": "0" * 64,
                                     "if_match": sha}, content=b"")
    assert_error(r, 412, "If-Match")

    # Many conditional commits at once: exactly one wins.
    sha_b = hashlib.sha256(b"B").hexdigest()
    txns = [prepared(leader, "ima/f", str(i).encode(), if_match=sha_b) for i in range(8)]

    def commit(txn_id: str) -> int:
        with authed_client(base_url=cluster.leader_url, timeout=30) as c:
            return c.post(f"/txns/{txn_id}/commit").status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = sorted(pool.map(commit, txns))
    assert codes == [200] + [412] * 7
    # In a batch commit too.
    sha_now = leader.get("/stat", params={"path": "ima/f"}).json()["sha256"]
    x, y = prepared(leader, "ima/f", b"X", if_match=sha_now), prepared(leader, "ima/f", b"Y", if_match=sha_now)
    results = leader.post("/txns/batch-commit", json={"txn_ids": [x, y]}).json()["results"]
    assert results[x]["state"] == "committed" and results[y]["status"] == 412


def test_racing_puts_with_the_same_if_match_have_one_winner(cluster, http):
    """Two uploads of 2 MiB, both conditional on the same ETag, both past their first bytes before either
    ends: exactly one is stored (201), the other is refused (412)."""
    base = b"base version"
    put_ok(http, "imr/race.bin", base)
    bodies = [random_bytes(2 * 1024 * 1024, seed=s) for s in (31, 32)]
    barrier = threading.Barrier(2, timeout=30)

    def upload(data: bytes):
        def body():
            yield data[:65536]
            barrier.wait()  # both requests are under way (their If-Match passed the user app's check)
            time.sleep(0.3)
            for i in range(65536, len(data), 65536):
                yield data[i:i + 65536]
        with authed_client(base_url=cluster.url, timeout=60) as c:
            return c.put("/files/imr/race.bin", content=body(), headers={"If-Match": etag(base)})

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        responses = list(pool.map(upload, bodies))
    codes = sorted(r.status_code for r in responses)
    assert codes == [201, 412], [r.text for r in responses]
    winner = bodies[[r.status_code for r in responses].index(201)]
    assert http.get("/files/imr/race.bin").content == winner
    assert len(http.get("/versions/imr/race.bin").json()["versions"]) == 2


# ---------------------------------------------------------------- If-Match on DELETE

def test_delete_if_match(http):
    put_ok(http, "imd/f.txt", b"v1")
    put_ok(http, "imd/f.txt", b"v2")
    assert_error(http.delete("/files/imd/f.txt", headers={"If-Match": etag(b"v1")}), 412, "If-Match")
    assert http.get("/files/imd/f.txt").content == b"v2"  # nothing changed
    assert http.delete("/files/imd/f.txt", headers={"If-Match": etag(b"v2")}).status_code == 204
    assert http.get("/files/imd/f.txt").status_code == 404
    assert_error(http.delete("/files/imd/f.txt", headers={"If-Match": "*"}), 412)
    put_ok(http, "imd/g.txt", b"g")
    assert http.delete("/files/imd/g.txt", headers={"If-Match": "*"}).status_code == 204


def test_leader_delete_checks_if_match(http, leader):
    put_ok(http, "imd/l.txt", b"l")
    wrong = hashlib.sha256(b"other").hexdigest()
    assert_error(leader.delete("/files", params={"path": "imd/l.txt", "if_match": wrong}), 412)
    assert_error(leader.delete("/files", params={"path": "imd/l.txt", "if_match": "nope"}), 400, "if_match")
    r = leader.delete("/files", params={"path": "imd/l.txt", "if_match": hashlib.sha256(b"l").hexdigest()})
    assert r.status_code == 200 and r.json()["deleted_versions"] == 1


# ---------------------------------------------------------------- GET / HEAD

def test_last_modified_is_the_commit_time(http):
    before = datetime.now(timezone.utc).replace(microsecond=0)
    put_ok(http, "cg/lm.txt", b"x")
    after = datetime.now(timezone.utc)
    for method in ("GET", "HEAD"):
        r = http.request(method, "/files/cg/lm.txt")
        assert r.status_code == 200
        when = parsedate_to_datetime(r.headers["last-modified"])
        assert r.headers["last-modified"].endswith(" GMT")
        assert before <= when <= after, (before, when, after)
    # An older version keeps its own time.
    time.sleep(1.1)
    put_ok(http, "cg/lm.txt", b"y")
    old = http.get("/files/cg/lm.txt", params={"version": 1}).headers["last-modified"]
    new = http.get("/files/cg/lm.txt").headers["last-modified"]
    assert parsedate_to_datetime(old) < parsedate_to_datetime(new)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_if_none_match_answers_304(http, method):
    data = random_bytes(3000, seed=41)
    put_ok(http, "cg/inm.bin", data)
    tag = etag(data)
    for header in (tag, f'"abc", {tag}', "W/" + tag, "*"):
        r = http.request(method, "/files/cg/inm.bin", headers={"If-None-Match": header})
        assert r.status_code == 304, header
        assert r.content == b"" and r.headers["etag"] == tag and "last-modified" in r.headers
    r = http.request(method, "/files/cg/inm.bin", headers={"If-None-Match": '"something-else"'})
    assert r.status_code == 200 and r.headers["etag"] == tag
    if method == "GET":
        assert r.content == data


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_if_modified_since_answers_304(http, method):
    data = b"modified?"
    put_ok(http, "cg/ims.txt", data)
    lm = http.head("/files/cg/ims.txt").headers["last-modified"]
    moment = parsedate_to_datetime(lm)
    later = format_datetime(moment + timedelta(hours=1), usegmt=True)
    earlier = format_datetime(moment - timedelta(seconds=1), usegmt=True)
    for since, status in [(lm, 304), (later, 304), (earlier, 200), ("not a date", 200), (lm + ", " + lm, 200)]:
        r = http.request(method, "/files/cg/ims.txt", headers={"If-Modified-Since": since})
        assert r.status_code == status, since
        if status == 304:
            assert r.content == b"" and r.headers["etag"] == etag(data)
    # If-None-Match present: If-Modified-Since is ignored (RFC 9110 §13.2.2).
    r = http.request(method, "/files/cg/ims.txt", headers={"If-None-Match": '"other"', "If-Modified-Since": later})
    assert r.status_code == 200


def test_get_if_match(http):
    data = b"read me"
    put_ok(http, "cg/im.txt", data)
    assert http.get("/files/cg/im.txt", headers={"If-Match": etag(data)}).content == data
    assert http.get("/files/cg/im.txt", headers={"If-Match": "*"}).status_code == 200
    assert_error(http.get("/files/cg/im.txt", headers={"If-Match": etag(b"other")}), 412)
    assert http.head("/files/cg/im.txt", headers={"If-Match": "W/" + etag(data)}).status_code == 412
    # A condition that holds lets the Range apply.
    r = http.get("/files/cg/im.txt", headers={"If-Match": etag(data), "Range": "bytes=0-3"})
    assert r.status_code == 206 and r.content == data[:4]
