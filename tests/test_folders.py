"""Explicit folders (``POST/GET/DELETE /folders``, their place in the file-or-folder rule, rename and
``/list``) and the ordered key scan (``GET /scan``), against real leader processes: SQLite, or PostgreSQL
with ``RINGFS_TEST_POSTGRES`` (a fresh database per leader).

Two scan tests run in-process against the leader's store (``leader.scan.scan``) on the same backends: one
compares it with a brute-force model of the contract over random names chosen to sort awkwardly (``-``,
``.`` and space sort before ``/``), one counts the SQL statements a delimiter scan of a big folder runs.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path

import httpx
import pytest

from shared.errors import BadRequest, Conflict, NotFound
from tests.conftest import PG_ENV, create_postgres_database
from tests.test_leader import assert_error, prepare
from tests.test_leader_s3_metadata import leader, write, write_many  # noqa: F401  (fixture)
from tests.utils.auth import SIGNING_KEY

pytestmark = pytest.mark.timeout(180)


def folder(leader: httpx.Client, path: str) -> httpx.Response:
    return leader.post("/folders", json={"path": path})


def scan(leader: httpx.Client, **params) -> dict:
    r = leader.get("/scan", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def keys(answer: dict) -> list[str]:
    return [item["key"] for item in answer["items"]]


def byte_order(keys_: list[str]) -> list[str]:
    return sorted(keys_, key=lambda k: k.encode("utf-8"))


# ---------------------------------------------------------------- folders


def test_create_get_and_delete_a_folder(leader):
    r = folder(leader, "f/a")
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["path"] == "f/a" and created["created"] is True and created["created_at"] <= time.time()
    again = folder(leader, "/f/a/")  # a leading and a trailing "/" name the same folder
    assert again.status_code == 200 and again.json() == {**created, "created": False}
    assert leader.get("/folders", params={"path": "f/a"}).json() == {
        "path": "f/a", "explicit": True, "created_at": created["created_at"], "empty": True}
    assert leader.delete("/folders", params={"path": "f/a"}).status_code == 204
    assert_error(leader.get("/folders", params={"path": "f/a"}), 404, "no such folder")
    assert_error(leader.delete("/folders", params={"path": "f/a"}), 404, "not an explicit folder")
    for bad in ("", "a//b", "a/../b", "a/\x01"):
        assert_error(folder(leader, bad), 400)
        assert_error(leader.get("/folders", params={"path": bad}), 400)
    assert_error(leader.post("/folders", json={}), 400)


def test_folders_implied_by_files_and_by_explicit_folders(leader):
    write(leader, "i/x/file", b"12345")
    assert leader.get("/folders", params={"path": "i/x"}).json() == {
        "path": "i/x", "explicit": False, "created_at": None, "empty": False}
    assert leader.get("/folders", params={"path": "i"}).json()["explicit"] is False
    assert_error(leader.get("/folders", params={"path": "i/x/file"}), 404)  # a file is no folder
    assert_error(leader.get("/folders", params={"path": "i/y"}), 404)
    assert folder(leader, "j/a/b").status_code == 201
    assert leader.get("/folders", params={"path": "j/a"}).json() == {
        "path": "j/a", "explicit": False, "created_at": None, "empty": False}
    assert leader.get("/folders", params={"path": "j/a/b"}).json()["empty"] is True
    assert_error(leader.get("/folders", params={"path": "j/a/b/c"}), 404)
    # An explicit folder with a file below is not empty.
    assert folder(leader, "i/x").json()["created"] is True
    assert leader.get("/folders", params={"path": "i/x"}).json()["empty"] is False


def test_delete_only_if_empty(leader):
    assert folder(leader, "e").status_code == 201
    write(leader, "e/f", b"x")
    assert_error(leader.delete("/folders", params={"path": "e"}), 409, "not empty")
    assert_error(leader.delete("/folders", params={"path": "e", "only_if_empty": "true"}), 409, "not empty")
    assert leader.delete("/folders", params={"path": "e", "only_if_empty": "false"}).status_code == 204
    assert leader.get("/folders", params={"path": "e"}).json()["explicit"] is False  # implied by e/f still
    assert leader.get("/stat", params={"path": "e/f"}).status_code == 200
    assert folder(leader, "e2").status_code == 201 and folder(leader, "e2/sub").status_code == 201
    assert_error(leader.delete("/folders", params={"path": "e2"}), 409, "holds folders")
    assert leader.delete("/folders", params={"path": "e2/sub"}).status_code == 204
    assert leader.delete("/folders", params={"path": "e2"}).status_code == 204
    assert_error(leader.delete("/folders", params={"path": "e3", "only_if_empty": "maybe"}), 400)


def test_a_name_is_a_file_or_an_explicit_folder(leader):
    write(leader, "c/file", b"x")
    assert_error(folder(leader, "c/file"), 409, "'c/file' is a file, so it cannot be created as a folder")
    assert_error(folder(leader, "c/file/sub"), 409, "'c/file' is a file, so the folder 'c/file/sub' cannot be created")
    assert_error(leader.get("/folders", params={"path": "c/file"}), 404)
    # A file at an explicit folder's path, or above one, is refused at prepare ...
    assert folder(leader, "c/dir").status_code == 201
    assert_error(prepare(leader, "c/dir", b"x"), 409, "is a folder")
    assert folder(leader, "c/deep/a/b").status_code == 201
    assert_error(prepare(leader, "c/deep", b"x"), 409, "is a folder")
    assert_error(prepare(leader, "c/deep/a", b"x"), 409, "is a folder")
    # ... but files below an explicit folder are fine.
    assert write(leader, "c/dir/inside", b"ok")["version"] == 1
    # ... and again at commit, whichever commit path: a folder created after the prepare wins.
    for path, params in (("c/late1", {}), ("c/late2", {"create_only": "true"}), ("c/late3", {})):
        p = prepare(leader, path, b"data", **params)
        assert p.status_code == 201, p.text
        assert folder(leader, path).status_code == 201
        if path == "c/late3":
            r = leader.post("/txns/batch-commit", json={"txn_ids": [p.json()["txn_id"]]})
            outcome = r.json()["results"][p.json()["txn_id"]]
            assert outcome["status"] == 409 and "is a folder" in outcome["error"], outcome
        else:
            assert_error(leader.post(f"/txns/{p.json()['txn_id']}/commit"), 409, "is a folder")
        assert_error(leader.get("/stat", params={"path": path}), 404)
        assert leader.get("/folders", params={"path": path}).json()["explicit"] is True
    # Restoring a trashed file onto an explicit folder is refused too.
    write(leader, "c/trashed", b"x")
    assert leader.delete("/files", params={"path": "c/trashed"}).status_code == 200
    assert folder(leader, "c/trashed").status_code == 201
    assert_error(leader.post("/undelete", json={"path": "c/trashed"}), 409, "is a folder")


def test_racing_folder_creation_and_file_commit_have_one_winner(leader):
    """On PostgreSQL the creation locks the pending rows at the name and above it, which the commit holds
    too, so one of the two always sees the other; never a file at (or above) an explicit folder."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for round_ in range(12):
            cases = [(f"race/{round_}/same", f"race/{round_}/same"), (f"race/{round_}/up", f"race/{round_}/up/x/y")]
            pending = {file: prepare(leader, file, b"racing").json()["txn_id"] for file, _ in cases}
            futures = []
            for file, folder_path in cases:
                futures.append((pool.submit(leader.post, f"/txns/{pending[file]}/commit"),
                                pool.submit(folder, leader, folder_path)))
            for commit, made in futures:
                statuses = sorted((commit.result().status_code, made.result().status_code))
                assert statuses == [201, 409] or statuses == [200, 409], (commit.result().text, made.result().text)
            for file, folder_path in cases:
                is_file = leader.get("/stat", params={"path": file}).status_code == 200
                is_folder = leader.get("/folders", params={"path": folder_path}).status_code == 200
                assert is_file != is_folder, (file, is_file, is_folder)


def test_rename_moves_explicit_folders(leader):
    assert folder(leader, "r/src").status_code == 201
    assert folder(leader, "r/src/empty").status_code == 201
    write(leader, "r/src/f", b"file")
    moved = leader.post("/rename", json={"src": "r/src", "dst": "r/dst"})
    assert moved.status_code == 200 and moved.json()["renamed"] == 1, moved.text
    assert leader.get("/folders", params={"path": "r/dst"}).json()["explicit"] is True
    state = leader.get("/folders", params={"path": "r/dst/empty"}).json()
    assert state["explicit"] is True and state["empty"] is True
    assert_error(leader.get("/folders", params={"path": "r/src"}), 404)
    assert_error(leader.get("/folders", params={"path": "r/src/empty"}), 404)
    assert leader.get("/stat", params={"path": "r/dst/f"}).status_code == 200
    # An empty explicit folder renames too (no file moves).
    assert folder(leader, "r/only").status_code == 201
    assert leader.post("/rename", json={"src": "r/only", "dst": "r/only2"}).json()["renamed"] == 0
    assert leader.get("/folders", params={"path": "r/only2"}).json()["explicit"] is True
    # Nothing may be renamed onto an explicit folder, or onto a name with one below it.
    write(leader, "r/file", b"x")
    assert_error(leader.post("/rename", json={"src": "r/file", "dst": "r/only2"}), 409, "is a folder")
    assert_error(leader.post("/rename", json={"src": "r/file", "dst": "r/dst/empty"}), 409, "exists")
    assert_error(leader.post("/rename", json={"src": "r/dst", "dst": "r/only2"}), 409, "exists")
    assert folder(leader, "r/above/deeper").status_code == 201
    assert_error(leader.post("/rename", json={"src": "r/file", "dst": "r/above"}), 409, "is a folder")
    assert_error(leader.post("/rename", json={"src": "r/nothing", "dst": "r/z"}), 404)


def test_list_shows_explicit_folders(leader):
    for path in ("l/empty", "l/deep/a/b", "l/full"):
        assert folder(leader, path).status_code == 201
    write(leader, "l/f", b"12")
    write(leader, "l/full/x", b"0123456789")
    write(leader, "l/full/sub/y", b"abc")
    created = {p: leader.get("/folders", params={"path": p}).json()["created_at"]
               for p in ("l/empty", "l/full", "l/deep/a/b")}

    def listing(folder_: str, **params) -> list[tuple]:
        r = leader.get("/list", params={"folder": folder_, **params})
        assert r.status_code == 200, r.text
        return [(e["name"], e["type"], e["size"], e["created_at"] if e["type"] == "dir" else "-")
                for e in r.json()["entries"]]

    assert listing("l") == [("deep", "dir", 0, None), ("empty", "dir", 0, created["l/empty"]), ("f", "file", 2, "-"),
                            ("full", "dir", 13, created["l/full"])]
    assert listing("l/empty") == []  # explicit and empty: listed, not 404
    assert listing("l/deep") == [("a", "dir", 0, None)]
    assert listing("l/deep/a") == [("b", "dir", 0, created["l/deep/a/b"])]
    assert [e[0] for e in listing("")] == ["l"]
    assert listing("l", recursive="true") == [("f", "file", 2, "-"), ("full/sub/y", "file", 3, "-"),
                                              ("full/x", "file", 10, "-")]
    assert listing("l", recursive="true", folders="true") == [
        ("deep/a/b", "dir", 0, created["l/deep/a/b"]), ("empty", "dir", 0, created["l/empty"]), ("f", "file", 2, "-"),
        ("full", "dir", 13, created["l/full"]), ("full/sub/y", "file", 3, "-"), ("full/x", "file", 10, "-")]
    assert listing("l/deep", recursive="true", folders="true") == [("a/b", "dir", 0, created["l/deep/a/b"])]
    # Readable prefixes filter explicit folders as they filter files.
    assert listing("l", readable="l/full/") == [("full", "dir", 13, created["l/full"])]
    assert listing("l", readable="l/deep/a/") == [("deep", "dir", 0, None)]  # a grant inside it shows it
    assert listing("l", readable=["l/empty", "l/f/"]) == [("empty", "dir", 0, created["l/empty"])]
    assert listing("l", readable=["l/empty", "l/f"]) == [  # a plain string prefix: "l/f" covers l/full/ too
        ("empty", "dir", 0, created["l/empty"]), ("f", "file", 2, "-"), ("full", "dir", 13, created["l/full"])]
    assert listing("l/empty", readable="l/") == []
    assert_error(leader.get("/list", params={"folder": "l/empty", "readable": "l/full/"}), 404)
    assert_error(leader.get("/list", params={"folder": "l/nothing"}), 404)


# ---------------------------------------------------------------- scan


def test_scan_orders_files_and_folder_keys_by_bytes(leader):
    files = ["s/a-b", "s/a.c", "s/a/x", "s/a0", "s/Z", "s/b", "s/é", "s/\u00ff", "s/\U0001f600", "s/a b"]
    folders_ = ["s/a", "s/a-", "s/a/y", "s/ab", "s/a b c", "s/\ufb01"]
    write_many(leader, [(f, f.encode()) for f in files])
    for f in folders_:
        assert folder(leader, f).status_code == 201
    want = byte_order(files + [f + "/" for f in folders_])
    assert want[:5] == ["s/Z", "s/a b", "s/a b c/", "s/a-/", "s/a-b"]  # what a path-ordered walk gets wrong
    answer = scan(leader, prefix="s/")
    assert keys(answer) == want and answer["truncated"] is False and answer["next"] == want[-1]
    by_key = {item["key"]: item for item in answer["items"]}
    assert by_key["s/a/"] == {"key": "s/a/", "path": "s/a", "folder": True, "created_at": by_key["s/a/"]["created_at"]}
    entry = by_key["s/b"]
    assert set(entry) == {"key", "path", "size", "version", "created_at", "committed_at", "sha256", "etag",
                          "content_type"} and entry["size"] == 3 and entry["version"] == 1
    # Page by one: the same keys, each page truncated but the last.
    paged, after = [], None
    while True:
        page = scan(leader, prefix="s/", limit=1, **({"after": after} if after else {}))
        paged += keys(page)
        after = page["next"]
        if not page["truncated"]:
            break
    assert paged == want
    # after is exclusive, start inclusive; both at once take the later one.
    assert keys(scan(leader, prefix="s/", after="s/a-/")) == want[want.index("s/a-/") + 1:]
    assert keys(scan(leader, prefix="s/", start="s/a-/")) == want[want.index("s/a-/"):]
    assert keys(scan(leader, prefix="s/", start="s/a0", after="s/a-/")) == want[want.index("s/a0"):]
    assert keys(scan(leader, prefix="s/", after="s/zzz")) == ["s/é", "s/\u00ff", "s/\ufb01/", "s/\U0001f600"]
    empty = scan(leader, prefix="s/", after="s/\U0010ffff")
    assert empty == {"items": [], "truncated": False, "next": None}


def test_scan_prefix_is_a_plain_string_prefix(leader):
    write_many(leader, [(p, b"x") for p in ("p/photos/x", "p/phone", "p/ph/a", "p/alpha", "p/pi")])
    assert folder(leader, "p/phx").status_code == 201
    assert keys(scan(leader, prefix="p/ph")) == ["p/ph/a", "p/phone", "p/photos/x", "p/phx/"]
    assert keys(scan(leader, prefix="p/phx/")) == ["p/phx/"]  # the folder marker itself
    assert keys(scan(leader, prefix="p/q")) == []


def test_scan_delimiter_rolls_keys_up(leader):
    write_many(leader, [(p, b"x") for p in ("d/photos/2020/a.jpg", "d/photos/2020/b.jpg", "d/photos/2021/c.jpg",
                                            "d/photos/top.jpg", "d/readme", "d/x-y/z")])
    for f in ("d/photos/empty", "d/videos"):
        assert folder(leader, f).status_code == 201

    def rolled(**params) -> list:
        return [(i["key"], "prefix" if i.get("prefix") else "folder" if i.get("folder") else "file")
                for i in scan(leader, delimiter="/", **params)["items"]]

    assert rolled(prefix="d/") == [("d/photos/", "prefix"), ("d/readme", "file"), ("d/videos/", "prefix"),
                                   ("d/x-y/", "prefix")]
    assert rolled(prefix="d/photos/") == [("d/photos/2020/", "prefix"), ("d/photos/2021/", "prefix"),
                                          ("d/photos/empty/", "prefix"), ("d/photos/top.jpg", "file")]
    assert rolled(prefix="d/videos/") == [("d/videos/", "folder")]
    assert rolled(prefix="d/p") == [("d/photos/", "prefix")]
    # Each common prefix is one result against the limit, answered once; paging goes on past it.
    first = scan(leader, prefix="d/", delimiter="/", limit=2)
    assert keys(first) == ["d/photos/", "d/readme"] and first["truncated"] is True and first["next"] == "d/readme"
    second = scan(leader, prefix="d/", delimiter="/", limit=2, after=first["next"])
    assert keys(second) == ["d/videos/", "d/x-y/"] and second["truncated"] is False
    assert keys(scan(leader, prefix="d/", delimiter="/", after="d/photos/")) == ["d/readme", "d/videos/", "d/x-y/"]
    assert keys(scan(leader, prefix="d/", delimiter="/", after="d/photos/2020/a.jpg")) == [
        "d/readme", "d/videos/", "d/x-y/"]  # an after inside a common prefix skips the rest of it
    assert keys(scan(leader, prefix="d/", delimiter="/", limit=1)) == ["d/photos/"]
    assert scan(leader, prefix="d/", delimiter="/", start="d/readme")["items"][0]["key"] == "d/readme"
    # Any delimiter, several characters long too; the empty one is none.
    assert keys(scan(leader, prefix="d/", delimiter="os/")) == ["d/photos/", "d/readme", "d/videos/", "d/x-y/z"]
    assert keys(scan(leader, prefix="d/", delimiter="-")) == keys(scan(leader, prefix="d/"))[:-1] + ["d/x-"]
    assert keys(scan(leader, prefix="d/", delimiter="")) == keys(scan(leader, prefix="d/"))


def test_scan_pages_through_2500_keys(leader):
    files = [f"big/{i % 7}/{i:05d}" for i in range(2300)]
    folders_ = [f"big/{i % 7}/f{i:03d}" for i in range(200)]
    write_many(leader, [(f, b"x") for f in files])
    for f in folders_:
        assert folder(leader, f).status_code == 201
    want = byte_order(files + [f + "/" for f in folders_])
    pages, after = [], None
    while True:
        page = scan(leader, prefix="big/", **({"after": after} if after else {}))  # the default limit: 1000
        pages.append(page)
        after = page["next"]
        if not page["truncated"]:
            break
    assert [len(p["items"]) for p in pages] == [1000, 1000, 500]
    assert [p["truncated"] for p in pages] == [True, True, False]
    assert [k for p in pages for k in keys(p)] == want
    assert [p["next"] for p in pages] == [want[999], want[1999], want[-1]]
    # An exact fit is not truncated; with a delimiter the 7 folders are 7 results.
    assert scan(leader, prefix="big/", limit=1000, start=want[1500])["truncated"] is False
    rolled = scan(leader, prefix="big/", delimiter="/", limit=7)
    assert keys(rolled) == [f"big/{i}/" for i in range(7)] and rolled["truncated"] is False
    assert scan(leader, prefix="big/", delimiter="/", limit=6)["truncated"] is True


def test_scan_readable_filtering(leader):
    write_many(leader, [(p, b"x") for p in ("rd/a/1", "rd/a/2", "rd/b/1", "rd/c", "rd/cd", "rd/d/1")])
    for f in ("rd/a/sub", "rd/b/sub", "rd/d/x/y"):
        assert folder(leader, f).status_code == 201
    assert keys(scan(leader, prefix="rd/", readable=["rd/a/", "rd/c"])) == ["rd/a/1", "rd/a/2", "rd/a/sub/", "rd/c",
                                                                            "rd/cd"]
    assert keys(scan(leader, prefix="rd/", readable=["rd/b/s"])) == ["rd/b/sub/"]
    assert keys(scan(leader, prefix="rd/", readable=["rd/a/", "rd/c"], delimiter="/")) == ["rd/a/", "rd/c", "rd/cd"]
    assert keys(scan(leader, prefix="rd/", readable=["rd/a/2", "rd/d/x"], delimiter="/")) == ["rd/a/", "rd/d/"]
    assert keys(scan(leader, prefix="rd/a/", readable=["rd/"])) == ["rd/a/1", "rd/a/2", "rd/a/sub/"]
    assert keys(scan(leader, prefix="rd/", readable=["other/"])) == []
    page = scan(leader, prefix="rd/", readable=["rd/a/", "rd/d/"], limit=3)
    assert keys(page) == ["rd/a/1", "rd/a/2", "rd/a/sub/"] and page["truncated"] is True
    assert keys(scan(leader, prefix="rd/", readable=["rd/a/", "rd/d/"], after=page["next"])) == ["rd/d/1", "rd/d/x/y/"]


@pytest.mark.parametrize("params, message", [
    ({"limit": "0"}, "limit"), ({"limit": "1001"}, "limit"), ({"limit": "1_0"}, "limit"), ({"limit": "-1"}, "limit"),
    ({"limit": "x"}, "limit"), ({"delimiter": "é" * 9}, "delimiter"), ({"delimiter": "x" * 17}, "delimiter"),
    ({"prefix": "a\x00"}, "prefix"), ({"after": "\x1b"}, "after"), ({"start": "a" * 4097}, "start"),
    ({"readable": ["ok/", "bad\x00"]}, "readable"),
])
def test_bad_scan_parameters_are_400(leader, params, message):
    assert_error(leader.get("/scan", params=params), 400, message)


def test_leader_client_folders_and_scan(leader):
    from shared.rpc.leader_client import LeaderClient
    from shared.rpc.transport import Transport

    write(leader, "rpc/file", b"x")

    async def run():
        transport = Transport(30, SIGNING_KEY)
        client = LeaderClient(transport, str(leader.base_url))
        try:
            made = await client.rpc_create_folder("rpc/bucket")
            assert made["created"] is True and (await client.rpc_create_folder("rpc/bucket"))["created"] is False
            assert (await client.rpc_folder("rpc/bucket"))["explicit"] is True
            with pytest.raises(NotFound):
                await client.rpc_folder("rpc/none")
            with pytest.raises(Conflict):
                await client.rpc_create_folder("rpc/file/x")
            await client.rpc_create_folder("rpc/bucket/dir")
            with pytest.raises(Conflict):
                await client.rpc_delete_folder("rpc/bucket")
            answer = await client.rpc_scan(prefix="rpc/", delimiter="/", limit=1)
            assert keys(answer) == ["rpc/bucket/"] and answer["truncated"] is True
            answer = await client.rpc_scan(prefix="rpc/", after=answer["next"], readable=["rpc/f"])
            assert keys(answer) == ["rpc/file"]
            await client.rpc_delete_folder("rpc/bucket", only_if_empty=False)
            await client.rpc_delete_folder("rpc/bucket/dir")
            with pytest.raises(NotFound):
                await client.rpc_delete_folder("rpc/bucket")
        finally:
            await transport.aclose()

    asyncio.run(run())


# ---------------------------------------------------------------- scan, in-process


def _backends() -> list:
    return [pytest.param("sqlite", id="sqlite"),
            pytest.param("postgresql", id="postgresql",
                         marks=pytest.mark.skipif(not os.environ.get(PG_ENV), reason=f"{PG_ENV} not set"))]


@pytest.fixture(params=_backends())
def store_url(request, tmp_path: Path) -> str:
    from leader.migrations import run_migrations

    url = (f"sqlite+aiosqlite:///{tmp_path / 'leader.db'}" if request.param == "sqlite"
           else create_postgres_database("ringfs_scan"))
    run_migrations(url)
    return url


async def _fill(store, files: list[str], folders_: list[str]) -> None:
    from leader.version_sql import FILE_VERSIONS, FOLDERS

    now = time.time()
    rows = [{"path": p, "version": v, "size": len(p), "sha256": "0" * 64, "chunk_size": 1024, "replication": 1,
             "chunk_count": 0, "chunk_digests": b"", "state": state, "txn_id": f"{p}#{v}", "create_only": False,
             "created_at": now} for p in files for v, state in ((1, "committed"), (2, "committed"), (3, "deleted"))]
    async with store.write_conn() as conn:
        for i in range(0, len(rows), 500):
            await conn.execute(FILE_VERSIONS.insert(), rows[i:i + 500])
        if folders_:
            await conn.execute(FOLDERS.insert(), [{"path": p, "created_at": now} for p in folders_])


def _model(files, folders_, prefix, after, start, delimiter, readable) -> list[str]:
    """The scan contract, by brute force over every key."""
    out, seen = [], set()
    for key in byte_order(list(files) + [f + "/" for f in folders_]):
        if not key.startswith(prefix) or (readable is not None and not any(key.startswith(r) for r in readable)):
            continue
        if (after is not None and key <= after) or (start is not None and key < start):
            continue
        cut = key.find(delimiter, len(prefix)) if delimiter else -1
        if cut >= 0:
            common = key[:cut + len(delimiter)]
            if common not in seen:
                seen.add(common)
                if (after is None or common > after) and (start is None or common >= start):
                    out.append(common)
            continue
        out.append(key)
    return out


def test_scan_matches_a_model_of_the_contract(store_url):
    from leader.scan import scan as run_scan
    from leader.store import Store

    rnd = random.Random(20240)
    alphabet = ["a", "b", "/", "-", ".", " ", "0", "é", "~", "\U0001f600"]
    names: set[str] = set()
    while len(names) < 250:
        name = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 5))).strip("/")
        if name and "//" not in name:
            names.add(name)
    files = {n for n in names if rnd.random() < 0.6}
    folders_ = names - files

    async def run() -> None:
        store = Store(store_url)
        try:
            for bad in ({"limit": 0}, {"limit": 1001}, {"delimiter": "x" * 17}, {"prefix": "\x00"}):
                with pytest.raises(BadRequest):
                    await run_scan(store, **bad)
            await _fill(store, sorted(files), sorted(folders_))
            for _ in range(300):
                prefix = rnd.choice(["", "a", "a/", "a-", "b", "é", "a/b", "a "])
                after = rnd.choice([None, None, "a", "a/", "a-b", "b/", "a/a/", "a ."])
                start = rnd.choice([None, None, "a", "a.", "b"])
                delimiter = rnd.choice([None, "/", "-", "a/"])
                readable = rnd.choice([None, None, ["a/"], ["a", "b-"], ["a/b", "a/a", "é"]])
                limit = rnd.choice([1, 2, 3, 7, 1000])
                want = _model(files, folders_, prefix, after, start, delimiter, readable)
                got, cursor = [], after
                while True:
                    page = await run_scan(store, prefix, cursor, start, limit, delimiter, readable)
                    assert len(page["items"]) <= limit
                    got += [item["key"] for item in page["items"]]
                    if not page["truncated"]:
                        break
                    cursor = page["next"]
                assert got == want, (prefix, after, start, delimiter, readable, limit)
        finally:
            await store.dispose()

    asyncio.run(run())


def test_a_delimiter_skips_a_big_folder_in_a_few_queries(store_url):
    """A folder of 3,000 files rolled up into one common prefix costs the same statements as one of 20: the
    scan seeks past the common prefix instead of reading what is inside."""
    from sqlalchemy import event

    from leader.scan import scan as run_scan
    from leader.store import Store

    async def statements(files: list[str]) -> tuple[int, dict]:
        store = Store(store_url)
        seen: list[str] = []
        event.listen(store.engine.sync_engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
        try:
            await _fill(store, files, [])
            seen.clear()
            answer = await run_scan(store, files[0].split("/")[0] + "/", None, None, 1000, "/", None)
            return len(seen), answer
        finally:
            await store.dispose()

    small, small_answer = asyncio.run(statements([f"q1/dir/f{i:04d}" for i in range(20)] + ["q1/z"]))
    big, big_answer = asyncio.run(statements([f"q2/dir/f{i:04d}" for i in range(3000)] + ["q2/z"]))
    assert keys(small_answer) == ["q1/dir/", "q1/z"] and keys(big_answer) == ["q2/dir/", "q2/z"]
    assert big == small <= 8, (small, big)
