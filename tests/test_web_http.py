"""The web page's HTTP contract across real processes (the browser tests are tests/test_web_page.py):
sessions, CSRF, grants, the file headers that keep an uploaded file from acting as part of the page, and
the listing's sort, filter and pages."""

from __future__ import annotations

import re
import time
import uuid

import httpx
import pytest

from tests.utils.auth import ROOT_ACCESS_KEY, ROOT_SECRET_KEY, authed_client
from user_app.web.listing import ListingQuery, arrange
from user_app.web.sessions import SessionSigner
from shared.auth.cluster_secret import ClusterSecret
from shared.errors import BadRequest

CSRF_RE = re.compile(r'name="csrf" value="([0-9a-f]+)"')
META_RE = re.compile(r'<meta name="csrf-token" content="([0-9a-f]*)">')


def browser(cluster) -> httpx.Client:
    """A cookie-keeping client that sends no Authorization header, like a browser on the page."""
    return httpx.Client(base_url=cluster.url, timeout=30, follow_redirects=False)


def log_in(client: httpx.Client, access_key: str, secret: str, next_: str = "/web/browse/") -> httpx.Response:
    form = client.get("/web/login")
    assert form.status_code == 200
    token = CSRF_RE.search(form.text).group(1)
    return client.post("/web/login", data={"csrf": token, "access_key": access_key, "secret_key": secret,
                                           "next": next_})


def page_token(client: httpx.Client, url: str = "/web/browse/") -> str:
    page = client.get(url)
    assert page.status_code == 200, page.text
    return META_RE.search(page.text).group(1)


@pytest.fixture(scope="module")
def api(cluster):
    with authed_client(base_url=cluster.url, timeout=60) as h:
        yield h


@pytest.fixture
def root_session(cluster):
    with browser(cluster) as c:
        assert log_in(c, ROOT_ACCESS_KEY, ROOT_SECRET_KEY).status_code == 303
        yield c


def new_key(api, grants, admin=False) -> tuple[str, str]:
    r = api.post("/admin/keys", json={"name": f"k-{uuid.uuid4().hex[:6]}", "grants": grants, "admin": admin})
    assert r.status_code == 201, r.text
    return r.json()["access_key"], r.json()["secret_key"]


def test_pages_need_a_session_and_never_take_basic(cluster, api):
    with browser(cluster) as c:
        r = c.get("/")
        assert r.status_code == 303 and r.headers["location"] == "/web/login?next=%2Fweb%2Fbrowse%2F"
        r = c.get("/web/browse/docs/?sort=size")
        assert r.status_code == 303 and r.headers["location"].startswith("/web/login?next=%2Fweb%2Fbrowse%2Fdocs")
        assert c.post("/web/delete", data={"path": "x"}).status_code == 401
        r = c.post("/web/delete", data={"path": "x"}, headers={"Accept": "text/html"})  # an expired form
        assert r.status_code == 303 and r.headers["location"].startswith("/web/login?next=")
    # HTTP Basic, which browsers re-send across sites, is no credential for the page
    assert api.get("/web/browse/").status_code == 303
    assert api.put("/web/upload/x.txt", content=b"x").status_code == 401


def test_login_sets_a_strict_http_only_cookie_and_logout_ends_it(cluster):
    with browser(cluster) as c:
        bad = log_in(c, ROOT_ACCESS_KEY, "wrong")
        assert bad.status_code == 401 and "unknown access key or wrong secret key" in bad.text
        assert "ringfs_session" not in c.cookies
        r = log_in(c, ROOT_ACCESS_KEY, ROOT_SECRET_KEY, next_="https://evil.example/")
        assert r.status_code == 303 and r.headers["location"] == "/web/browse/"  # no open redirect
        cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("ringfs_session="))
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=28800" in cookie
        assert c.get("/web/browse/").status_code == 200
        token = page_token(c)
        assert c.post("/web/logout", data={"csrf": token}).status_code == 303
        assert c.get("/web/browse/").status_code == 303


def test_a_forged_or_tampered_cookie_is_no_session(cluster):
    forged = SessionSigner(ClusterSecret(b"\x01" * 32), 3600).new_session(ROOT_ACCESS_KEY, ROOT_SECRET_KEY)
    with browser(cluster) as c:
        c.cookies.set("ringfs_session", forged)
        assert c.get("/web/browse/").status_code == 303
    with browser(cluster) as c:
        log_in(c, ROOT_ACCESS_KEY, ROOT_SECRET_KEY)
        value = c.cookies["ringfs_session"]
    tampered = value[:-2] + ("AA" if not value.endswith("AA") else "BB")
    with browser(cluster) as c:
        assert c.get("/web/browse/", headers={"Cookie": f"ringfs_session={value}"}).status_code == 200
        assert c.get("/web/browse/", headers={"Cookie": f"ringfs_session={tampered}"}).status_code == 303


def test_login_form_needs_its_own_csrf_token(cluster):
    with browser(cluster) as c:
        r = c.post("/web/login", data={"access_key": ROOT_ACCESS_KEY, "secret_key": ROOT_SECRET_KEY})
        assert r.status_code == 403 and "ringfs_session" not in c.cookies


def test_every_unsafe_request_needs_the_csrf_token(cluster, api, root_session):
    path = f"web-{uuid.uuid4().hex[:8]}/keep.txt"
    assert api.put(f"/files/{path}", content=b"keep").status_code == 201
    c = root_session
    r = c.post("/web/delete", data={"path": path, "back": "/web/browse/"})
    assert r.status_code == 403 and "CSRF" in r.json()["error"]
    assert c.post("/web/delete", data={"path": path, "csrf": "0" * 64}).status_code == 403
    assert c.put(f"/web/upload/{path}", content=b"other").status_code == 403
    token = page_token(c)
    assert c.post("/web/delete", data={"path": path, "csrf": token}, headers={"Origin": "https://evil.example"}
                  ).status_code == 403
    assert api.get(f"/files/{path}").content == b"keep"
    r = c.post("/web/delete", data={"path": path, "csrf": token, "back": "/web/trash"})
    assert r.status_code == 303 and r.headers["location"] == "/web/trash"
    assert api.get(f"/files/{path}").status_code == 404


def test_upload_download_and_the_headers_that_sandbox_a_file(cluster, api, root_session):
    c, folder = root_session, f"web-{uuid.uuid4().hex[:8]}"
    token = page_token(c)
    body = b"<html><script>alert(document.cookie)</script></html>"
    r = c.put(f"/web/upload/{folder}/page.html", content=body, headers={"X-CSRF-Token": token})
    assert r.status_code == 201 and r.json()["version"] == 1
    shown = c.get(f"/web/file/{folder}/page.html")
    assert shown.content == body and shown.headers["content-type"].startswith("text/plain")
    assert shown.headers["content-security-policy"].startswith("sandbox")
    assert shown.headers["x-content-type-options"] == "nosniff"
    saved = c.get(f"/web/file/{folder}/page.html?download=1")
    assert saved.headers["content-disposition"].startswith('attachment; filename="page.html"')
    big = bytes(range(256)) * 4096  # 1 MiB
    assert c.put(f"/web/upload/{folder}/big.bin", content=big, headers={"X-CSRF-Token": token}).status_code == 201
    part = c.get(f"/web/file/{folder}/big.bin", headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == big[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(big)}"
    assert api.get(f"/files/{folder}/big.bin").content == big


def test_a_read_only_key_sees_no_write_controls_and_is_refused_anyway(cluster, api):
    folder = f"web-{uuid.uuid4().hex[:8]}"
    api.put(f"/files/{folder}/a.txt", content=b"one")
    api.put(f"/files/{folder}/a.txt", content=b"two")
    access, secret = new_key(api, [{"prefix": folder + "/", "access": "read"}])
    with browser(cluster) as c:
        assert log_in(c, access, secret).status_code == 303
        page = c.get(f"/web/browse/{folder}/")
        assert page.status_code == 200 and 'data-path="' + folder + '/a.txt"' in page.text
        for control in ('id="upload-zone"', 'id="mkdir"', 'class="rename"', 'class="delete"'):
            assert control not in page.text
        view = c.get(f"/web/view/{folder}/a.txt")
        assert 'class="restore"' not in view.text and 'class="delete"' not in view.text
        assert 'id="nav-admin"' not in view.text
        token = META_RE.search(page.text).group(1)
        assert c.put(f"/web/upload/{folder}/b.txt", content=b"x", headers={"X-CSRF-Token": token}).status_code == 403
        assert c.post("/web/delete", data={"path": f"{folder}/a.txt", "csrf": token}).status_code == 403
        assert c.post("/web/restore", data={"path": f"{folder}/a.txt", "version": "1", "csrf": token}
                      ).status_code == 403
        assert c.get("/web/admin").status_code == 403
    assert api.get(f"/files/{folder}/a.txt").content == b"two"
    assert api.get(f"/files/{folder}/b.txt").status_code == 404


def test_restore_undelete_rename_and_mkdir_through_forms(cluster, api, root_session):
    c, folder = root_session, f"web-{uuid.uuid4().hex[:8]}"
    api.put(f"/files/{folder}/a.txt", content=b"one")
    api.put(f"/files/{folder}/a.txt", content=b"two")
    token = page_token(c)
    assert c.post("/web/restore", data={"path": f"{folder}/a.txt", "version": "1", "csrf": token}).status_code == 303
    assert api.get(f"/files/{folder}/a.txt").content == b"one"
    assert [v["version"] for v in api.get(f"/versions/{folder}/a.txt").json()["versions"]] == [1, 2, 3]
    assert c.post("/web/rename", data={"src": folder, "dst": folder + "-moved", "csrf": token}).status_code == 303
    assert api.get(f"/files/{folder}-moved/a.txt").content == b"one"
    assert c.post("/web/delete", data={"path": folder + "-moved", "kind": "dir", "csrf": token}).status_code == 303
    assert api.get(f"/files/{folder}-moved/a.txt").status_code == 404
    trash = c.get("/web/trash").text
    assert f'data-path="{folder}-moved/a.txt"' in trash
    assert c.post("/web/undelete", data={"path": f"{folder}-moved/a.txt", "csrf": token}).status_code == 303
    assert api.get(f"/files/{folder}-moved/a.txt").content == b"one"
    assert c.post("/web/mkdir", data={"folder": folder, "name": "empty", "csrf": token}).status_code == 303
    assert 'data-path="' + folder + '/empty"' in c.get(f"/web/browse/{folder}/").text
    r = c.post("/web/mkdir", data={"folder": folder, "name": "a/b", "csrf": token}, headers={"Accept": "text/html"})
    assert r.status_code == 400 and "cannot contain" in r.text and "<html" in r.text


def test_deleting_a_folder_takes_its_explicit_subfolders_too(cluster, api, root_session):
    c, folder = root_session, f"web-{uuid.uuid4().hex[:8]}"
    api.put(f"/files/{folder}/a.txt", content=b"a")
    token = page_token(c)
    for parent, name in ((folder, "empty"), (f"{folder}/empty", "deeper")):
        assert c.post("/web/mkdir", data={"folder": parent, "name": name, "csrf": token}).status_code == 303
    assert c.post("/web/delete", data={"path": folder, "kind": "dir", "csrf": token}).status_code == 303
    assert api.get(f"/list/{folder}").status_code == 404  # no file and no explicit folder keeps it alive
    assert c.get(f"/web/browse/{folder}/").status_code == 404


def test_bad_input_is_a_clear_4xx(cluster, root_session):
    c = root_session
    r = c.get("/web/browse/?sort=owner")
    assert r.status_code == 400 and "sort must be one of" in r.json()["error"]
    assert c.get("/web/browse/?limit=0").status_code == 400
    assert c.get("/web/view/no/such/file.txt").status_code == 404
    assert c.get("/web/file/no/such/file.txt").status_code == 404
    assert c.get("/web/browse/no-such-folder/").status_code == 404
    token = page_token(c)
    r = c.post("/web/restore", data={"path": "x.txt", "version": "abc", "csrf": token})
    assert r.status_code == 400
    r = c.post("/web/admin/keys", data={"name": "x", "grants": "docs/ everything", "csrf": token})
    assert r.status_code == 400 and "grant line 1" in r.json()["error"]


def test_keys_page_shows_a_new_secret_once_and_deletes(cluster, api, root_session):
    c = root_session
    token = page_token(c, "/web/admin/keys")
    r = c.post("/web/admin/keys", data={"name": "page-made", "grants": "docs/ write\n* read", "csrf": token})
    assert r.status_code == 201
    access = re.search(r'id="new-access-key" class="mono">([^<]+)<', r.text).group(1)
    secret = re.search(r'id="new-secret-key" class="mono">([^<]+)<', r.text).group(1)
    key = next(k for k in api.get("/admin/keys").json()["keys"] if k["access_key"] == access)
    assert {(g["prefix"], g["access"]) for g in key["grants"]} == {("docs/", "write"), ("", "read")}
    assert secret not in c.get("/web/admin/keys").text
    with browser(cluster) as other:
        assert log_in(other, access, secret).status_code == 303
        assert c.post("/web/admin/keys/delete", data={"access_key": access, "csrf": token}).status_code == 303
        # the session ends with the key (within the key cache's TTL)
        deadline = time.monotonic() + 30
        while other.get("/web/browse/").status_code == 200:
            assert time.monotonic() < deadline, "a deleted key's session still works"
            time.sleep(0.2)


def test_admin_page_and_fsck_button(cluster, root_session):
    c = root_session
    page = c.get("/web/admin")
    assert page.status_code == 200 and page.text.count('class="server"') == 3 and 'id="ring-chart"' in page.text
    token = META_RE.search(page.text).group(1)
    assert c.post("/web/admin/fsck", data={"csrf": token}).status_code == 303
    page = c.get("/web/admin").text
    assert re.search(r'id="under-replicated">0<', page) and re.search(r'id="lost">0<', page)


def test_listing_arranges_folders_first_sorts_filters_and_pages():
    entries = [{"name": "b.txt", "type": "file", "size": 5, "committed_at": 3},
               {"name": "A.txt", "type": "file", "size": 9, "committed_at": 1},
               {"name": "zdir", "type": "dir", "size": 1},
               {"name": "adir", "type": "dir", "size": 100}]
    names = lambda q: [e["name"] for e in arrange(entries, q)[0]]  # noqa: E731
    assert names(ListingQuery()) == ["adir", "zdir", "A.txt", "b.txt"]
    assert names(ListingQuery(sort="size", order="desc")) == ["adir", "zdir", "A.txt", "b.txt"]
    assert names(ListingQuery(sort="date")) == ["adir", "zdir", "A.txt", "b.txt"]
    assert names(ListingQuery(sort="date", order="desc")) == ["zdir", "adir", "b.txt", "A.txt"]
    assert names(ListingQuery(q="a")) == ["adir", "A.txt"]
    page, total = arrange(entries, ListingQuery(offset=1, limit=2))
    assert [e["name"] for e in page] == ["zdir", "A.txt"] and total == 4
    assert ListingQuery(sort="size").with_(offset=200) == {"sort": "size", "offset": "200"}
    with pytest.raises(BadRequest):
        ListingQuery.parse({"order": "up"})


def test_session_signer_expires_and_rotates():
    old, new = ClusterSecret(b"\x02" * 32), ClusterSecret(b"\x03" * 32, previous=b"\x02" * 32)
    cookie = SessionSigner(old, 3600).new_session("AK", "secret")
    assert SessionSigner(new, 3600).open_session(cookie).access_key == "AK"  # during a rotation
    assert SessionSigner(ClusterSecret(b"\x03" * 32), 3600).open_session(cookie) is None  # after it
    assert SessionSigner(old, -1).open_session(cookie) is None  # expired
    signer = SessionSigner(old, 3600)
    assert signer.check_csrf("sid", signer.csrf_token("sid")) and not signer.check_csrf("sid", signer.csrf_token("x"))
