"""The leader's half of S3 multipart uploads (``leader/multipart.py``, ``leader/parts.py``), against real
leader processes: SQLite, or PostgreSQL with ``RINGFS_TEST_POSTGRES`` (a fresh database per leader).

Uploads are created, looked up, listed and aborted through ``/multipart``; parts are written through the
real ``POST /txns`` (and ``/txns/batch``) with ``upload_id`` and ``part_number``, then assembled and
completed. The leader never sees a part's bytes, only its metadata and chunk digests, so the parts here are
digests only (random, unique per test), sized as real clients size them (5 MiB and up, 64 KiB chunks).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest

from leader.parts import part_path
from shared.errors import BadRequest, Conflict, NotFound, PreconditionFailed
from shared.protocol.manifests import decode_manifest
from tests.test_leader import assert_error
from tests.test_leader_s3_metadata import leader, start, write  # noqa: F401  (fixture)
from tests.test_query_plans import plans  # noqa: F401  (fixture)
from tests.utils.auth import SIGNING_KEY, authed_client
from user_app.client.local_cluster import wait_until

pytestmark = pytest.mark.timeout(180)

MIB = 1024 * 1024
PART_CHUNK = 64 * 1024  # the user app's part chunk size (the leader's STREAMED_CHUNK_SIZE)
OCTET = {"content-type": "application/octet-stream"}
META = '{"color":"blue","owner":"me"}'


@dataclass
class Part:
    """One uploaded part as the test made it: what the leader must answer for it."""

    number: int
    size: int
    chunk_size: int
    etag: str
    digests: bytes
    replication: int = 2

    @property
    def digest_list(self) -> list[bytes]:
        return [self.digests[i:i + 32] for i in range(0, len(self.digests), 32)]


def create(leader: httpx.Client, path: str, **body) -> dict:
    r = leader.post("/multipart", json={"path": path, **body})
    assert r.status_code == 201, r.text
    return r.json()


def part_fields(upload: dict, number: int, size: int, chunk_size: int = PART_CHUNK, replication: int = 2,
                **extra) -> tuple[dict, Part]:
    """The ``VersionPrepare`` fields of a new part and the part itself (fresh random digests and ETag)."""
    n_chunks = -(-size // chunk_size)
    part = Part(number, size, chunk_size, os.urandom(16).hex(), os.urandom(32 * n_chunks), replication)
    fields = {"txn_id": uuid.uuid4().hex, "path": upload["path"], "size": size, "sha256": os.urandom(32).hex(),
              "chunk_size": chunk_size, "replication": replication, "etag": part.etag,
              "upload_id": upload["upload_id"], "part_number": number, **extra}
    return fields, part


def prepare_part(leader: httpx.Client, upload: dict, number: int, size: int, **kw) -> tuple[httpx.Response, Part]:
    """``POST /txns`` of a new part (not committed)."""
    fields, part = part_fields(upload, number, size, **kw)
    return leader.post("/txns", params=fields, content=part.digests, headers=OCTET), part


def put_part(leader: httpx.Client, upload: dict, number: int, size: int, **kw) -> Part:
    """Prepare and commit a new part through ``POST /txns`` and ``/txns/{id}/commit``."""
    r, part = prepare_part(leader, upload, number, size, **kw)
    assert r.status_code == 201, r.text
    c = leader.post(f"/txns/{r.json()['txn_id']}/commit")
    assert c.status_code == 200, c.text
    return part


def assemble(leader: httpx.Client, upload_id: str, parts: list) -> dict:
    r = leader.post(f"/multipart/{upload_id}/assemble", json={"parts": parts})
    assert r.status_code == 200, r.text
    return r.json()


def complete(leader: httpx.Client, upload_id: str, parts: list, digests_sha256: str, **body) -> httpx.Response:
    return leader.post(f"/multipart/{upload_id}/complete", json={
        "parts": parts, "sha256": body.pop("sha256", "ab" * 32), "digests_sha256": digests_sha256, **body})


def multipart_etag(parts: list[Part]) -> str:
    return hashlib.md5(b"".join(bytes.fromhex(p.etag) for p in parts)).hexdigest() + f"-{len(parts)}"


def unreferenced(leader: httpx.Client, digests: list[bytes]) -> list[bytes]:
    r = leader.post("/gc/unreferenced", content=b"".join(digests), headers=OCTET)
    assert r.status_code == 200, r.text
    return [r.content[i:i + 32] for i in range(0, len(r.content), 32)]


def uploads(leader: httpx.Client, **params) -> dict:
    r = leader.get("/multipart", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def parts_of(leader: httpx.Client, upload_id: str, **params) -> dict:
    r = leader.get(f"/multipart/{upload_id}/parts", params=params)
    assert r.status_code == 200, r.text
    return r.json()


# ---------------------------------------------------------------- uploads


def test_create_get_list_and_abort_uploads(leader):
    first = create(leader, "/b/x", content_type="video/mp4", user_metadata=META,
                   object_headers='{"x-amz-checksum-algorithm":"crc32","cache-control":"no-cache"}')
    assert set(first) == {"upload_id", "path", "created_at"} and first["path"] == "b/x"
    got = leader.get(f"/multipart/{first['upload_id']}")
    assert got.status_code == 200 and got.json() == {
        **first, "content_type": "video/mp4", "user_metadata": {"color": "blue", "owner": "me"},
        "object_headers": {"cache-control": "no-cache", "x-amz-checksum-algorithm": "crc32"}}
    assert leader.post("/multipart", json={"path": "b/x", "object_headers": '{"x-bad": "1"}'}).status_code == 400
    second = create(leader, "b/x")  # a second upload of the same key
    others = [create(leader, "b/y"), create(leader, "b-z"), create(leader, "c/z")]
    assert leader.get(f"/multipart/{second['upload_id']}").json()["user_metadata"] is None
    # Ids sort as creation times, so S3's "upload id greater than the marker" continues a listing in order.
    assert first["upload_id"] < second["upload_id"] and first["created_at"] < second["created_at"]

    listed = uploads(leader, prefix="b/")
    assert listed == {"uploads": [first, second, others[0]], "truncated": False}
    assert [u["path"] for u in uploads(leader)["uploads"]] == ["b-z", "b/x", "b/x", "b/y", "c/z"]
    assert uploads(leader, prefix="b")["uploads"] == [others[1], first, second, others[0]]
    assert uploads(leader, prefix="b/", key_marker="b/x")["uploads"] == [others[0]]
    assert uploads(leader, prefix="b/", key_marker="b/x", upload_id_marker=first["upload_id"])["uploads"] == [
        second, others[0]]
    assert uploads(leader, prefix="b/", upload_id_marker=second["upload_id"])["uploads"] == listed["uploads"]
    # Page by page with the markers S3 hands back (the last entry's key and upload id).
    seen, markers = [], {}
    while True:
        page = uploads(leader, limit=2, **markers)
        seen += page["uploads"]
        if not page["truncated"]:
            break
        markers = {"key_marker": page["uploads"][-1]["path"], "upload_id_marker": page["uploads"][-1]["upload_id"]}
    assert seen == uploads(leader)["uploads"] and len(seen) == 5

    assert leader.delete(f"/multipart/{first['upload_id']}").status_code == 204
    assert_error(leader.get(f"/multipart/{first['upload_id']}"), 404, "no such upload")
    assert_error(leader.delete(f"/multipart/{first['upload_id']}"), 404, "no such upload")
    assert uploads(leader, prefix="b/x")["uploads"] == [second]
    for bad_id in ("nosuchupload", "bad$id", "x" * 65):
        assert_error(leader.get(f"/multipart/{bad_id}"), 404, "no such upload")
        assert_error(leader.delete(f"/multipart/{bad_id}"), 404)
        assert_error(leader.get(f"/multipart/{bad_id}/parts"), 404)


def test_bad_upload_requests_are_400(leader):
    for body in ({"path": ""}, {"path": "a//b"}, {"path": "a/\x01"}, {"path": "a/../b"}, {},
                 {"path": "a", "user_metadata": "[]"}, {"path": "a", "user_metadata": '{"Upper":"x"}'},
                 {"path": "a", "content_type": "bad\nvalue"}, {"path": "a", "content_type": ""}):
        assert_error(leader.post("/multipart", json=body), 400)
    assert_error(leader.post("/multipart", content=b"not json", headers={"content-type": "application/json"}), 400)
    for params in ({"limit": "0"}, {"limit": "1001"}, {"limit": "x"}, {"prefix": "a\x00"},
                   {"key_marker": "a\x7f"}):
        assert_error(leader.get("/multipart", params=params), 400)
    upload = create(leader, "q/x")
    for params in ({"limit": "0"}, {"part_number_marker": "-1"}, {"part_number_marker": "1.5"}):
        assert_error(leader.get(f"/multipart/{upload['upload_id']}/parts", params=params), 400)


# ---------------------------------------------------------------- parts


def test_parts_are_prepared_and_committed_through_txns(leader):
    upload = create(leader, "p/object.bin")
    upload_id = upload["upload_id"]
    r, one = prepare_part(leader, upload, 1, 5 * MIB)
    assert r.status_code == 201, r.text
    assert r.json()["path"] == part_path(upload_id, 1) and r.json()["version"] == 1
    assert parts_of(leader, upload_id) == {"parts": [], "truncated": False}  # pending: not a part yet
    c = leader.post(f"/txns/{r.json()['txn_id']}/commit")
    assert c.status_code == 200, c.text
    info = c.json()
    assert (info["path"], info["version"], info["state"], info["size"], info["etag"], info["chunks"]) == (
        part_path(upload_id, 1), 1, "part", 5 * MIB, one.etag, 80)
    assert leader.post(f"/txns/{r.json()['txn_id']}/commit").json() == info  # idempotent, like any commit

    # Through /txns/batch and /txns/batch-commit too, a bad section failing only itself.
    fields_2, two = part_fields(upload, 2, 6 * MIB)
    fields_3, three = part_fields(upload, 3, 1000)
    fields_bad, _ = part_fields({**upload, "upload_id": "0" * 48}, 4, 1000)
    body = b""
    for fields, digests in ((fields_2, two.digests), (fields_3, three.digests), (fields_bad, b"\0" * 32)):
        head = orjson.dumps(fields)
        body += struct.pack(">I", len(head)) + head + struct.pack(">I", len(digests)) + digests
    r = leader.post("/txns/batch", content=body, headers=OCTET)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert results[fields_2["txn_id"]]["path"] == part_path(upload_id, 2)
    assert results[fields_bad["txn_id"]]["status"] == 404 and "no such upload" in results[fields_bad["txn_id"]]["error"]
    r = leader.post("/txns/batch-commit", json={"txn_ids": [fields_2["txn_id"], fields_3["txn_id"]]})
    assert r.status_code == 200 and {v["state"] for v in r.json()["results"].values()} == {"part"}, r.text

    listing = parts_of(leader, upload_id)
    assert not listing["truncated"]
    assert [(p["part_number"], p["size"], p["etag"]) for p in listing["parts"]] == [
        (1, 5 * MIB, one.etag), (2, 6 * MIB, two.etag), (3, 1000, three.etag)]
    assert all(p["committed_at"] >= info["committed_at"] for p in listing["parts"])

    # A part number uploaded again is the next version of its part; the latest wins.
    again = put_part(leader, upload, 2, 7 * MIB)
    assert [(p["part_number"], p["size"], p["etag"]) for p in parts_of(leader, upload_id)["parts"]][1] == (
        2, 7 * MIB, again.etag)
    assert leader.get("/stat", params={"path": "p/object.bin"}).status_code == 404

    # Pages by part number.
    page = parts_of(leader, upload_id, limit=2)
    assert [p["part_number"] for p in page["parts"]] == [1, 2] and page["truncated"]
    page = parts_of(leader, upload_id, part_number_marker=2, limit=2)
    assert [p["part_number"] for p in page["parts"]] == [3] and not page["truncated"]
    assert parts_of(leader, upload_id, part_number_marker=10_000)["parts"] == []


def test_bad_part_prepares(leader):
    upload = create(leader, "pb/x")
    for kw, status, message in (
        ({"create_only": "true"}, 400, "create_only or if_match"),
        ({"if_match": "*"}, 400, "create_only or if_match"),
        ({"etag": "0123456789abcdef0123456789abcdef-2"}, 400, "needs its etag"),
        ({"path": "pb/other"}, 400, "writes 'pb/x', not 'pb/other'"),
        ({"path": "pb//x"}, 400, "empty segment"),
        ({"upload_id": "f" * 48}, 404, "no such upload"),
        ({"upload_id": "bad$id"}, 400, "upload_id"),
        ({"part_number": "0"}, 400, "part_number"),
        ({"part_number": "10001"}, 400, "part_number"),
        ({"part_number": "+5"}, 400, "part_number"),
    ):
        r, _ = prepare_part(leader, upload, 1, 2000, **kw)
        assert_error(r, status, message)
    fields, part = part_fields(upload, 1, 2000)
    del fields["etag"]
    assert_error(leader.post("/txns", params=fields, content=part.digests, headers=OCTET), 400, "needs its etag")
    del fields["part_number"]
    assert_error(leader.post("/txns", params=fields, content=part.digests, headers=OCTET), 400, "go together")
    assert parts_of(leader, upload["upload_id"])["parts"] == []


def test_a_part_of_an_aborted_upload_does_not_commit(leader):
    upload = create(leader, "ab/x")
    r, pending = prepare_part(leader, upload, 1, 3000)
    assert r.status_code == 201, r.text
    committed = put_part(leader, upload, 2, 3000)
    digests = pending.digest_list + committed.digest_list
    assert unreferenced(leader, digests) == []  # pending and committed parts reference their chunks
    assert leader.delete(f"/multipart/{upload['upload_id']}").status_code == 204
    assert unreferenced(leader, digests) == digests  # every row of the parts went with the upload
    assert_error(leader.post(f"/txns/{r.json()['txn_id']}/commit"), 404)
    batch = leader.post("/txns/batch-commit", json={"txn_ids": [r.json()["txn_id"]]}).json()["results"]
    assert batch[r.json()["txn_id"]]["status"] == 404


def test_parts_are_invisible_to_the_namespace(leader):
    write(leader, "v/file", b"a file")
    upload = create(leader, "v/object")
    put_part(leader, upload, 1, 5 * MIB)
    r, _ = prepare_part(leader, upload, 2, 1000)  # and one still pending
    assert r.status_code == 201
    hidden = part_path(upload["upload_id"], 1)

    listing = leader.get("/list", params={"folder": "", "recursive": "true"}).json()
    assert [e["path"] for e in listing["entries"]] == ["v/file"]
    assert [e["path"] for e in leader.get("/list", params={"folder": ""}).json()["entries"]] == ["v"]
    assert [e["path"] for e in leader.get("/list", params={"folder": "v"}).json()["entries"]] == ["v/file"]
    scan = leader.get("/scan").json()
    assert [i["key"] for i in scan["items"]] == ["v/file"] and not scan["truncated"]
    assert [i["key"] for i in leader.get("/scan", params={"delimiter": "/"}).json()["items"]] == ["v/"]
    assert_error(leader.get("/stat", params={"path": "v/object"}), 404)
    for path in (hidden, "\x7f", "\x7f/multipart"):  # no user path can name a part
        assert_error(leader.get("/stat", params={"path": path}), 400, "control character")
        assert_error(leader.get("/manifest", params={"path": path}), 400, "control character")
        assert_error(leader.get("/versions", params={"path": path}), 400, "control character")
        assert_error(leader.get("/scan", params={"prefix": path}), 400, "control character")
    assert leader.get("/trash").json() == {"entries": []}
    assert leader.delete("/files", params={"path": "v/file"}).status_code == 200
    assert [e["path"] for e in leader.get("/trash").json()["entries"]] == ["v/file"]
    assert leader.get("/scan").json()["items"] == []
    # fsck checks live and trashed versions only (no chunk server here, so the trashed file's chunk is lost).
    report = leader.get("/fsck").json()
    assert report["files"] == 1 and [p["path"] for p in report["problems"]] == ["v/file"], report
    # The upload's path can still be written, and a folder made below it: parts are no files.
    assert write(leader, "v/object", b"plain")["version"] == 1
    assert leader.post("/folders", json={"path": "w"}).status_code == 201
    assert write(leader, "w/inside", b"x")["version"] == 1


# ---------------------------------------------------------------- assemble


def test_assemble_answers_s3_problems(leader):
    upload = create(leader, "as/x")
    uid = upload["upload_id"]
    one, two, small = put_part(leader, upload, 1, 5 * MIB), put_part(leader, upload, 2, 5 * MIB), put_part(
        leader, upload, 3, 1000)
    tiny = put_part(leader, upload, 4, 10)

    def problem(parts: list) -> tuple[str, str]:
        answer = assemble(leader, uid, parts)
        assert set(answer) == {"problem"}, answer
        return answer["problem"]["code"], answer["problem"]["message"]

    assert problem([[2, two.etag], [1, one.etag]])[0] == "InvalidPartOrder"
    assert problem([[1, one.etag], [1, one.etag]])[0] == "InvalidPartOrder"
    code, message = problem([[1, one.etag], [2, one.etag]])
    assert code == "InvalidPart" and "part 2" in message and two.etag in message
    assert problem([[1, one.etag], [5, one.etag]])[0] == "InvalidPart"
    assert problem([[0, one.etag]])[0] == "InvalidPart"
    assert problem([[10_001, one.etag]])[0] == "InvalidPart"
    code, message = problem([[1, one.etag], [3, small.etag], [4, tiny.etag]])
    assert code == "EntityTooSmall" and "part 3 is 1000 bytes" in message
    # Only the last part may be small, and alone it is the whole object.
    assert problem([[3, small.etag], [4, tiny.etag]])[0] == "EntityTooSmall"
    assert assemble(leader, uid, [[1, one.etag], [2, two.etag], [4, tiny.etag]])["problem"] is None
    assert assemble(leader, uid, [[4, tiny.etag]])["problem"] is None
    # ETags come back quoted or in upper case from some clients.
    assert assemble(leader, uid, [[1, f'"{one.etag}"'], [2, two.etag.upper()]])["problem"] is None

    for body in ({"parts": []}, {"parts": "x"}, {"parts": [[1]]}, {"parts": [["1", one.etag]]},
                 {"parts": [[True, one.etag]]}, {"parts": [[1, 5]]}, {}, {"parts": [[1, "e" * 1025]]}):
        assert_error(leader.post(f"/multipart/{uid}/assemble", json=body), 400)
    assert_error(leader.post(f"/multipart/{uid}/assemble", content=b"{", headers={"content-type": "application/json"}),
                 400)
    assert_error(leader.post(f"/multipart/{'0' * 48}/assemble", json={"parts": [[1, one.etag]]}), 404, "no such upload")
    assert len(parts_of(leader, uid)["parts"]) == 4  # read-only


def test_assemble_plans_aligned_and_unaligned_parts(leader):
    upload = create(leader, "pl/x")
    uid = upload["upload_id"]
    one, two, last = put_part(leader, upload, 1, 5 * MIB), put_part(leader, upload, 2, 8 * MIB), put_part(
        leader, upload, 3, 1234)
    odd = put_part(leader, upload, 4, 5 * MIB + 1)  # not a whole number of 64 KiB chunks
    other_chunks = put_part(leader, upload, 5, 5 * MIB, chunk_size=1024 * 1024, replication=1)
    small = put_part(leader, upload, 6, 1234)

    chosen = [one, two, last]
    plan = assemble(leader, uid, [[p.number, p.etag] for p in chosen])
    joined = b"".join(p.digests for p in chosen)
    assert plan == {
        "problem": None, "size": 13 * MIB + 1234, "chunk_size": PART_CHUNK, "replication": 2, "aligned": True,
        "etag": multipart_etag(chosen), "digests_sha256": hashlib.sha256(joined).hexdigest(),
        "parts": [{"part_number": p.number, "size": p.size, "chunk_size": p.chunk_size, "etag": p.etag,
                   "digests": base64.b64encode(p.digests).decode(), "object_headers": None} for p in chosen]}
    assert plan["etag"].endswith("-3")

    unaligned = assemble(leader, uid, [[4, odd.etag], [6, small.etag]])
    assert unaligned["problem"] is None and unaligned["aligned"] is False and unaligned["size"] == 5 * MIB + 1 + 1234
    assert unaligned["etag"] == multipart_etag([odd, small]) and unaligned["chunk_size"] == PART_CHUNK
    # The last part need not be whole chunks: an odd last part is aligned.
    assert assemble(leader, uid, [[1, one.etag], [4, odd.etag]])["aligned"] is True
    mixed = assemble(leader, uid, [[1, one.etag], [5, other_chunks.etag]])
    assert (mixed["aligned"], mixed["chunk_size"], mixed["replication"]) == (False, PART_CHUNK, 1)
    assert [p["chunk_size"] for p in mixed["parts"]] == [PART_CHUNK, 1024 * 1024]


# ---------------------------------------------------------------- complete


def test_complete_makes_one_version_of_the_joined_chunk_lists(leader):
    upload = create(leader, "cm/video.mp4", content_type="video/mp4", user_metadata=META)
    uid = upload["upload_id"]
    one = put_part(leader, upload, 1, 5 * MIB)
    replaced = put_part(leader, upload, 2, 5 * MIB)
    two = put_part(leader, upload, 2, 6 * MIB)  # the one that counts
    three = put_part(leader, upload, 3, 777)
    unused = put_part(leader, upload, 4, 5 * MIB)
    chosen = [one, two, three]
    listed = [[p.number, p.etag] for p in chosen]
    plan = assemble(leader, uid, listed)
    sha = hashlib.sha256(b"the object's content").hexdigest()

    assert_error(complete(leader, uid, listed, "0" * 64, sha256=sha), 409, "the parts changed since assemble")
    assert_error(complete(leader, uid, [[2, two.etag], [1, one.etag]], plan["digests_sha256"]), 400, "InvalidPartOrder")
    assert_error(complete(leader, uid, [[1, two.etag]], plan["digests_sha256"]), 400, "InvalidPart")
    assert_error(complete(leader, uid, listed, plan["digests_sha256"], sha256="NOTHEX"), 400, "sha256")
    assert_error(complete(leader, uid, listed, "xyz"), 400, "digests_sha256")
    assert_error(complete(leader, "0" * 48, listed, plan["digests_sha256"]), 404, "no such upload")

    r = complete(leader, uid, listed, plan["digests_sha256"], sha256=sha)
    assert r.status_code == 201, r.text
    info = r.json()
    assert {k: info[k] for k in ("path", "version", "size", "sha256", "chunks", "chunk_size", "replication",
                                 "state", "etag", "content_type", "user_metadata")} == {
        "path": "cm/video.mp4", "version": 1, "size": 11 * MIB + 777, "sha256": sha, "chunks": 80 + 96 + 1,
        "chunk_size": PART_CHUNK, "replication": 2, "state": "committed", "etag": multipart_etag(chosen),
        "content_type": "video/mp4", "user_metadata": {"color": "blue", "owner": "me"}}
    assert info["etag"].endswith("-3")
    m = leader.get("/manifest", params={"path": "cm/video.mp4"})
    assert m.status_code == 200
    manifest = decode_manifest(m.content)
    assert bytes(manifest.digests) == b"".join(p.digests for p in chosen)
    assert leader.get("/stat", params={"path": "cm/video.mp4"}).json() == info

    # The upload and all its parts are gone: the version references the chunks it uses, nothing else does.
    assert_error(leader.get(f"/multipart/{uid}"), 404)
    assert_error(leader.get(f"/multipart/{uid}/parts"), 404)
    assert_error(leader.post(f"/multipart/{uid}/assemble", json={"parts": listed}), 404)
    assert_error(complete(leader, uid, listed, plan["digests_sha256"], sha256=sha), 404, "no such upload")
    assert uploads(leader, prefix="cm/")["uploads"] == []
    used = one.digest_list + two.digest_list + three.digest_list
    dropped = replaced.digest_list + unused.digest_list
    assert unreferenced(leader, used + dropped) == dropped
    assert len(leader.get("/versions", params={"path": "cm/video.mp4"}).json()["versions"]) == 1


def test_complete_refuses_unaligned_parts(leader):
    upload = create(leader, "ua/x")
    odd, last = put_part(leader, upload, 1, 5 * MIB + 3), put_part(leader, upload, 2, 10)
    listed = [[1, odd.etag], [2, last.etag]]
    plan = assemble(leader, upload["upload_id"], listed)
    assert plan["aligned"] is False
    assert_error(complete(leader, upload["upload_id"], listed, plan["digests_sha256"]), 400, "not aligned")
    # The upload stays, for the user app to join by a copy and then abort.
    assert leader.get(f"/multipart/{upload['upload_id']}").status_code == 200
    assert leader.delete(f"/multipart/{upload['upload_id']}").status_code == 204


def test_complete_applies_the_rules_of_a_commit(leader):
    existing = write(leader, "cc/taken", b"old content")
    upload = create(leader, "cc/taken")
    uid = upload["upload_id"]
    part = put_part(leader, upload, 1, 100)
    listed = [[1, part.etag]]
    plan = assemble(leader, uid, listed)

    assert_error(complete(leader, uid, listed, plan["digests_sha256"], create_only=True), 412, "create-only")
    assert_error(complete(leader, uid, listed, plan["digests_sha256"], if_match="0" * 64), 412, "If-Match failed")
    assert_error(complete(leader, uid, listed, plan["digests_sha256"], if_match="bad"), 400)
    # A refused completion leaves the upload (and its parts referenced) and no pending version behind.
    assert leader.get(f"/multipart/{uid}").status_code == 200
    assert unreferenced(leader, part.digest_list) == []
    assert [v["version"] for v in leader.get("/versions", params={"path": "cc/taken"}).json()["versions"]] == [1]
    r = complete(leader, uid, listed, plan["digests_sha256"], if_match=existing["sha256"])
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 2 and r.json()["etag"] == multipart_etag([part])

    # A name is a file or a folder: an upload below a file, or at an explicit folder, cannot complete.
    for path in ("cc/taken/below", "cc/folder"):
        if path == "cc/folder":
            assert leader.post("/folders", json={"path": path}).status_code == 201
        upload = create(leader, path)
        part = put_part(leader, upload, 1, 100)
        plan = assemble(leader, upload["upload_id"], [[1, part.etag]])
        assert_error(complete(leader, upload["upload_id"], [[1, part.etag]], plan["digests_sha256"]), 409)
        assert leader.get(f"/multipart/{upload['upload_id']}").status_code == 200


def test_an_upload_completes_at_most_once(leader):
    for round_ in range(3):
        upload = create(leader, f"once/{round_}")
        part = put_part(leader, upload, 1, 5000)
        listed = [[1, part.etag]]
        digests_sha256 = assemble(leader, upload["upload_id"], listed)["digests_sha256"]

        def attempt(i: int) -> int:
            with authed_client(base_url=str(leader.base_url), timeout=30) as client:
                if i == 0:
                    return client.delete(f"/multipart/{upload['upload_id']}").status_code
                return complete(client, upload["upload_id"], listed, digests_sha256).status_code

        with ThreadPoolExecutor(6) as pool:
            statuses = list(pool.map(attempt, range(6)))
        abort_status, completions = statuses[0], statuses[1:]
        versions = leader.get("/versions", params={"path": f"once/{round_}"})
        if abort_status == 204:  # the abort won: nothing completed
            assert set(completions) == {404}, statuses
            assert versions.status_code == 404
            assert unreferenced(leader, part.digest_list) == part.digest_list
        else:  # one completion won; the abort and every other completion found the upload gone
            assert abort_status == 404 and sorted(completions) == [201, 404, 404, 404, 404], statuses
            assert len(versions.json()["versions"]) == 1
            assert unreferenced(leader, part.digest_list) == []


# ---------------------------------------------------------------- expiry


def test_unfinished_uploads_expire_after_multipart_ttl(tmp_path: Path):
    svc, leader = start(tmp_path, "ttl", MULTIPART_TTL="1", SWEEP_INTERVAL="0.2")
    try:
        upload = create(leader, "ttl/x")
        part = put_part(leader, upload, 1, 3000)
        r, pending = prepare_part(leader, upload, 2, 3000)
        assert r.status_code == 201
        assert unreferenced(leader, part.digest_list + pending.digest_list) == []
        wait_until(lambda: leader.get(f"/multipart/{upload['upload_id']}").status_code == 404, 15,
                   what="the upload expired")
        assert unreferenced(leader, part.digest_list + pending.digest_list) == part.digest_list + pending.digest_list
        assert uploads(leader)["uploads"] == []
        assert_error(leader.post(f"/txns/{r.json()['txn_id']}/commit"), 404)
    finally:
        leader.close()
        svc.stop()


def test_pending_parts_are_swept_like_any_pending_version(tmp_path: Path):
    svc, leader = start(tmp_path, "pending", PENDING_TTL="1", SWEEP_INTERVAL="0.2")
    try:
        upload = create(leader, "sw/x")
        r, pending = prepare_part(leader, upload, 1, 3000)
        assert r.status_code == 201
        wait_until(lambda: unreferenced(leader, pending.digest_list) == pending.digest_list, 15,
                   what="the pending part was swept")
        assert_error(leader.post(f"/txns/{r.json()['txn_id']}/commit"), 410, "expired")
        assert leader.get(f"/multipart/{upload['upload_id']}").status_code == 200  # the upload lives on
        assert parts_of(leader, upload["upload_id"])["parts"] == []
    finally:
        leader.close()
        svc.stop()


# ---------------------------------------------------------------- the user app's client


def test_leader_client_multipart_calls(leader):
    from shared.rpc.leader_client import LeaderClient
    from shared.rpc.transport import Transport

    async def run():
        transport = Transport(30, SIGNING_KEY)
        client = LeaderClient(transport, str(leader.base_url))
        try:
            created = await client.rpc_create_upload("lc/obj", "text/plain", '{"a":"b"}')
            uid = created["upload_id"]
            assert await client.rpc_upload(uid) == {**created, "content_type": "text/plain",
                                                    "user_metadata": {"a": "b"}, "object_headers": None}
            listing = await client.rpc_list_uploads("lc/")
            assert listing == {"uploads": [created], "truncated": False}
            assert (await client.rpc_list_uploads("lc/", key_marker="lc/obj", upload_id_marker=uid))["uploads"] == []
            part = put_part(leader, created, 1, 5 * MIB)
            last = put_part(leader, created, 2, 100)
            parts = (await client.rpc_list_parts(uid))["parts"]
            assert [(p["part_number"], p["etag"]) for p in parts] == [(1, part.etag), (2, last.etag)]
            assert (await client.rpc_list_parts(uid, 1, 1))["parts"][0]["part_number"] == 2
            listed = [(1, part.etag), (2, last.etag)]
            problem = await client.rpc_assemble_upload(uid, [(2, last.etag), (1, part.etag)])
            assert problem == {"problem": {"code": "InvalidPartOrder", "message": problem["problem"]["message"]}}
            plan = await client.rpc_assemble_upload(uid, listed)
            assert plan["problem"] is None and plan["aligned"] and plan["etag"] == multipart_etag([part, last])
            with pytest.raises(Conflict):
                await client.rpc_complete_upload(uid, listed, sha256="cd" * 32, digests_sha256="0" * 64)
            with pytest.raises(BadRequest):
                await client.rpc_complete_upload(uid, [(1, "0" * 32)], sha256="cd" * 32, digests_sha256="0" * 64)
            write(leader, "lc/obj", b"there first")
            with pytest.raises(PreconditionFailed):
                await client.rpc_complete_upload(uid, listed, sha256="cd" * 32,
                                                 digests_sha256=plan["digests_sha256"], create_only=True)
            info = await client.rpc_complete_upload(uid, listed, sha256="cd" * 32,
                                                    digests_sha256=plan["digests_sha256"])
            assert (info.path, info.version, info.etag, info.content_type) == ("lc/obj", 2, plan["etag"], "text/plain")
            for call in (client.rpc_upload(uid), client.rpc_abort_upload(uid), client.rpc_list_parts(uid),
                         client.rpc_assemble_upload(uid, listed)):
                with pytest.raises(NotFound):
                    await call
            other = await client.rpc_create_upload("lc/two")
            await client.rpc_abort_upload(other["upload_id"])
            for bad in ("", "..", "a/b", "x" * 65, "?"):  # a client's garbage id: NotFound, never a bad call
                with pytest.raises(NotFound):
                    await client.rpc_upload(bad)
            with pytest.raises(BadRequest):
                await client.rpc_create_upload("lc//bad")
        finally:
            await transport.aclose()

    asyncio.run(run())


def test_a_batch_section_of_a_part_answers_what_its_single_prepare_does(leader):
    """The same rules through the single and the batch prepare: a section answers what its request does."""
    upload = create(leader, "eq/x")
    fields, part = part_fields(upload, 1, 100, path="eq/y")
    single = leader.post("/txns", params=fields, content=part.digests, headers=OCTET)
    head = orjson.dumps({**fields, "txn_id": uuid.uuid4().hex})
    body = struct.pack(">I", len(head)) + head + struct.pack(">I", len(part.digests)) + part.digests
    batch = leader.post("/txns/batch", content=body, headers=OCTET).json()["results"]
    [entry] = batch.values()
    assert_error(single, 400, "writes 'eq/x'")
    assert entry == {"error": single.json()["error"], "status": 400}


# ---------------------------------------------------------------- query plans (SQLite)


def test_multipart_statements_walk_their_indexes(plans):
    """ListMultipartUploads walks the uploads' path index in order and stops at its LIMIT, ListParts the
    parts' path range of ``file_versions`` (not every row in state ``part``), the expiry the creation-time
    index, an abort's part deletion the path index."""
    from leader import multipart, parts

    for bounded in (True, False):
        for marker in (None, "key", "key+id"):
            lines = plans(multipart._uploads_statement(bounded, marker),
                          {"lo": "a/", "hi": "a0", "key": "a/b", "id": "0" * 48, "k": 9})
            assert len(lines) == 1 and "ix_multipart_uploads_path_created_at_upload_id" in lines[0], lines
    lo, hi = parts.part_range("0" * 48)
    lines = plans(multipart._PARTS_IN_RANGE, {"lo": lo, "hi": hi, "k": 9})
    assert lines[0].startswith("SEARCH file_versions USING INDEX ix_file_versions_path_state_version"), lines
    assert not any("TEMP B-TREE" in line for line in lines), lines
    assert "ix_multipart_uploads_created_at" in plans(multipart._EXPIRED, {"cutoff": 1.0, "k": 9})[0]
    assert "ix_file_versions_path_state_version" in plans(parts.DELETE_PARTS, {"lo": lo, "hi": hi})[0]
