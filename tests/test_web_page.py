"""The web page (``/web/...``, ``user_app/web/``) in a real Chromium on loopback, against real clusters.

Playwright (PyPI) drives Debian's ``/usr/bin/chromium`` (``tests/utils/browser.py``); without them the
module skips, or fails with ``RINGFS_REQUIRE_BROWSER=1``. Everything goes through the page's contract
(ids and classes, URLs); data is seeded and checked through the user API with the root key (``http``).
Each test works in a folder of its own (a uuid) on the module's shared cluster; the admin test kills a
chunk server of a cluster of its own.

Screenshots (login, browse, upload, preview, video, versions, trash, admin, keys) go to
``$RINGFS_SCREENSHOTS`` (``docs/screenshots`` to commit them) or the test's ``tmp_path``.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from tests.utils.auth import ROOT_ACCESS_KEY, ROOT_SECRET_KEY, authed_client
from tests.utils.browser import require_browser

sync_api = require_browser()
expect = sync_api.expect

from tests.utils.browser import (  # noqa: E402
    UploadWatcher, browser, csrf_token, drop_files, entries, login, names, new_page, path_of, row,  # noqa: F401
    screenshots, session_cookie, shot, submit,  # noqa: F401
)
from tests.utils.data import random_bytes  # noqa: E402
from tests.utils.media import make_test_video  # noqa: E402
from user_app.client.local_cluster import wait_until  # noqa: E402

pytestmark = pytest.mark.timeout(180)

MiB = 1024 * 1024
ROOT = (ROOT_ACCESS_KEY, ROOT_SECRET_KEY)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def path_of_url(url: str) -> str:
    return urlparse(url).path


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def put(http: httpx.Client, path: str, data: bytes) -> dict:
    r = http.put(f"/files/{path}", content=data)
    assert r.status_code == 201, (path, r.status_code, r.text)
    return r.json()


def get(http: httpx.Client, path: str) -> httpx.Response:
    return http.get(f"/files/{path}")


def make_key(http: httpx.Client, name: str, grants: list[tuple[str, str]], admin: bool = False) -> tuple[str, str]:
    r = http.post("/admin/keys", json={"name": name, "admin": admin,
                                       "grants": [{"prefix": p, "access": a} for p, a in grants]})
    assert r.status_code == 201, r.text
    return r.json()["access_key"], r.json()["secret_key"]


@pytest.fixture
def admin_page(cluster, new_page):
    """A page logged in with the root key on the shared cluster."""
    page = new_page(cluster.url)
    assert login(page, *ROOT).status == 303
    return page


@pytest.fixture(scope="session")
def video_clip(tmp_path_factory):
    """15 s of 320x240 VP8 WebM, keyframes every second, ~3.5 MB (``tests/utils/media.py``)."""
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        pytest.fail("imageio-ffmpeg is not installed (pip install imageio-ffmpeg)", pytrace=False)
    return make_test_video(tmp_path_factory.mktemp("video") / "clip.webm").read_bytes()


# ---------------------------------------------------------------- log in, browse, log out


def test_wrong_secret_shows_error_and_no_session(cluster, new_page, screenshots):
    page = new_page(cluster.url)
    page.goto("/")
    assert path_of(page) == "/web/login"  # GET / -> 303 to the login page when logged out
    expect(page.locator("form#login")).to_be_visible()
    shot(page, screenshots, "login.png")

    answer = login(page, ROOT_ACCESS_KEY, ROOT_SECRET_KEY + "-wrong")
    assert answer.status == 401
    expect(page.locator(".error")).to_be_visible()
    assert page.locator(".error").inner_text().strip()
    assert session_cookie(page) is None
    assert login(page, "RKNOSUCHKEY000000000", ROOT_SECRET_KEY).status == 401
    expect(page.locator(".error")).to_be_visible()
    page.goto("/web/browse/")
    assert path_of(page) == "/web/login"


def test_login_browse_logout(cluster, http, new_page, screenshots):
    top = unique("browse")
    # Seeded in this order so that name, size and date order all differ.
    sizes = {"mid.txt": 300, "zeta.txt": 10, "alpha.txt": 50}
    for name, size in sizes.items():
        put(http, f"{top}/{name}", b"x" * size)
    put(http, f"{top}/b-sub/inner.txt", b"b")
    put(http, f"{top}/a-sub/deep/inner.txt", b"a")

    page = new_page(cluster.url)
    page.goto("/")
    assert path_of(page) == "/web/login" and parse_qs(urlparse(page.url).query).get("next") == ["/web/browse/"]
    answer = login(page, *ROOT, next_path="/web/browse/")
    assert answer.status == 303
    assert path_of(page) == "/web/browse/"
    assert session_cookie(page)
    cookie = next(c for c in page.context.cookies() if c["name"] == "ringfs_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie
    assert page.locator("#whoami").inner_text().strip()
    for nav in ("a#nav-files", "a#nav-trash", "a#nav-admin", "a#nav-keys"):  # root is an admin
        expect(page.locator(nav)).to_be_visible()

    # Root -> the folder, by its link.
    row(page, top).locator("a.name").click()
    page.wait_for_url(re.compile(rf"/web/browse/{top}/?$"))
    listed = entries(page)
    assert [(e["name"], e["type"]) for e in listed] == [
        ("a-sub", "dir"), ("b-sub", "dir"), ("alpha.txt", "file"), ("mid.txt", "file"), ("zeta.txt", "file")], listed
    assert {e["path"] for e in listed} == {f"{top}/{n}" for n in ("a-sub", "b-sub", *sizes)}
    shot(page, screenshots, "browse.png")

    # Sort by size: the link, then both orders explicitly. Folders stay first.
    page.locator("a#sort-size").click()
    page.wait_for_url(re.compile(r"[?&]sort=size"))
    files = [e["name"] for e in entries(page) if e["type"] == "file"]
    assert files in (["zeta.txt", "alpha.txt", "mid.txt"], ["mid.txt", "alpha.txt", "zeta.txt"]), files
    for order, expected in (("asc", ["zeta.txt", "alpha.txt", "mid.txt"]), ("desc", ["mid.txt", "alpha.txt", "zeta.txt"])):
        page.goto(f"/web/browse/{top}/?sort=size&order={order}")
        listed = entries(page)
        assert [e["type"] for e in listed] == ["dir", "dir", "file", "file", "file"], (order, listed)
        assert [e["name"] for e in listed if e["type"] == "file"] == expected, (order, listed)
    for order, expected in (("asc", ["mid.txt", "zeta.txt", "alpha.txt"]), ("desc", ["alpha.txt", "zeta.txt", "mid.txt"])):
        page.goto(f"/web/browse/{top}/?sort=date&order={order}")
        assert [e["name"] for e in entries(page) if e["type"] == "file"] == expected, order
    page.goto(f"/web/browse/{top}/?sort=name&order=asc")

    # Filter on a substring of the name.
    q = page.locator("form#filter input[name=q]")
    q.fill("lph")
    q.press("Enter")
    expect(page.locator("table#entries tbody tr.entry")).to_have_count(1)
    assert names(page) == ["alpha.txt"]
    page.goto(f"/web/browse/{top}/?q=sub")
    assert names(page) == ["a-sub", "b-sub"]

    # Down two levels, then back up by the breadcrumbs.
    page.goto(f"/web/browse/{top}/")
    row(page, "a-sub").locator("a.name").click()
    page.wait_for_url(re.compile(rf"/web/browse/{top}/a-sub/?$"))
    row(page, "deep").locator("a.name").click()
    page.wait_for_url(re.compile(rf"/web/browse/{top}/a-sub/deep/?$"))
    assert names(page) == ["inner.txt"]
    crumbs = page.locator("nav.breadcrumbs a")
    texts = [t.strip().strip("/") for t in crumbs.all_inner_texts()]
    assert top in texts and "a-sub" in texts, texts
    assert urlparse(crumbs.first.get_attribute("href")).path == "/web/browse/", texts  # the root comes first
    crumbs.nth(texts.index(top)).click()
    page.wait_for_url(re.compile(rf"/web/browse/{top}/?$"))
    assert "alpha.txt" in names(page)
    # A file's link opens its view page.
    row(page, "alpha.txt").locator("a.name").click()
    page.wait_for_url(re.compile(rf"/web/view/{top}/alpha\.txt$"))
    expect(page.locator("h1#file-name")).to_contain_text("alpha.txt")

    # Log out: the cookie goes, protected pages and the bytes need a login again.
    page.locator("form#logout button").click()
    page.wait_for_url(re.compile(r"/web/login"))
    assert session_cookie(page) is None, page.context.cookies()
    page.goto(f"/web/browse/{top}/")
    assert path_of(page) == "/web/login"
    expect(page.locator("form#login")).to_be_visible()
    r = page.request.get(f"/web/file/{top}/alpha.txt", max_redirects=0)
    assert r.status != 200 and r.body() != b"x" * 50, r.status


def test_load_more_appends_in_place(cluster, http, admin_page):
    top = unique("more")
    expected = [f"d{i}" for i in range(2)] + [f"f{i}.txt" for i in range(5)]
    for n in expected:
        put(http, f"{top}/{n}/x" if n.startswith("d") else f"{top}/{n}", b"-")
    page = admin_page
    page.goto(f"/web/browse/{top}/?limit=3")
    assert names(page) == expected[:3]
    page.evaluate("window.__sameDocument = true")
    rows = page.locator("table#entries tbody tr.entry")
    for shown in (6, 7):
        page.locator("a#load-more").click()
        expect(rows).to_have_count(shown)
    assert names(page) == expected
    assert page.evaluate("window.__sameDocument === true")  # appended in place, not a new page
    expect(page.locator("a#load-more")).to_have_count(0)


# ---------------------------------------------------------------- upload and download


def test_upload_by_drop_and_download_back(cluster, http, admin_page, tmp_path, screenshots):
    top = unique("upload")
    put(http, f"{top}/existing.txt", b"already here")
    small, big = b"hello from a real drop\n" * 3, random_bytes(50 * MiB, seed=50)
    (tmp_path / "small.txt").write_bytes(small)
    (tmp_path / "big.bin").write_bytes(big)

    page = admin_page
    watcher = UploadWatcher(page)  # before the page loads: the listing reloads itself when uploads end
    page.goto(f"/web/browse/{top}/")
    expect(page.locator("#upload-zone")).to_be_visible()
    expect(page.locator("input#file-input[type=file][multiple]")).to_have_count(1)
    drop_files(page, "#upload-zone", [tmp_path / "small.txt", tmp_path / "big.bin"])
    watcher.wait_started({"small.txt", "big.bin"})
    shot(page, screenshots, "upload.png")
    watcher.wait_done({"small.txt", "big.bin"}, timeout=90)
    assert set(watcher.history) == {"small.txt", "big.bin"}, watcher.history
    # The listing reloads and shows both.
    expect(row(page, "big.bin")).to_have_count(1)
    expect(row(page, "small.txt")).to_have_count(1)

    # Back through the page: the download link of the view page, and the bytes URL with the session cookie.
    page.goto(f"/web/view/{top}/big.bin")
    with page.expect_download(timeout=60_000) as info:
        page.locator("a#download").click()
    download = info.value
    assert download.suggested_filename == "big.bin"
    assert sha(open(download.path(), "rb").read()) == sha(big)
    r = page.request.get(f"/web/file/{top}/small.txt")
    assert r.status == 200 and r.body() == small
    # And the user API agrees.
    assert sha(get(http, f"{top}/big.bin").content) == sha(big)
    assert get(http, f"{top}/small.txt").content == small


def test_upload_folder_by_drop(cluster, http, admin_page, tmp_path):
    top = unique("folder-drop")
    put(http, f"{top}/existing.txt", b"x")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    files = {"tree/a.txt": b"file a\n", "tree/sub/b.txt": random_bytes(70_000, seed=7)}
    for rel, data in files.items():
        (tmp_path / rel).write_bytes(data)

    page = admin_page
    watcher = UploadWatcher(page)
    page.goto(f"/web/browse/{top}/")
    drop_files(page, "#upload-zone", [tree])
    watcher.wait_done(set(files), timeout=30)
    expect(row(page, "tree")).to_have_count(1)
    for rel, data in files.items():
        assert get(http, f"{top}/{rel}").content == data, rel


# ---------------------------------------------------------------- rename, delete, trash


def test_rename_folder_delete_and_undelete(cluster, http, admin_page, screenshots):
    top = unique("rename")
    put(http, f"{top}/old/a.txt", b"contents of a")
    put(http, f"{top}/old/sub/b.txt", b"contents of b")
    page = admin_page
    page.goto(f"/web/browse/{top}/")

    # mkdir
    page.locator("form#mkdir input[name=name]").fill("made")
    status = submit(page, page.locator("form#mkdir button, form#mkdir [type=submit]").first, "/web/mkdir")
    assert status == 303, status
    expect(row(page, "made")).to_have_count(1)
    assert row(page, "made").get_attribute("data-type") == "dir", entries(page)

    # Rename the folder.
    dst = row(page, "old").locator("form.rename input[name=dst]")
    prefilled = dst.input_value()
    assert prefilled.rstrip("/") == f"{top}/old", prefilled
    dst.fill(f"{top}/new" + ("/" if prefilled.endswith("/") else ""))
    status = submit(page, row(page, "old").locator("form.rename button"), "/web/rename")
    assert status == 303, status
    expect(row(page, "new")).to_have_count(1)
    expect(row(page, "old")).to_have_count(0)
    row(page, "new").locator("a.name").click()
    page.wait_for_url(re.compile(rf"/web/browse/{top}/new/?$"))
    assert names(page) == ["sub", "a.txt"], entries(page)
    r = get(http, f"{top}/new/sub/b.txt")
    assert r.content == b"contents of b", (r.status_code, r.text)
    r = get(http, f"{top}/old/a.txt")
    assert r.status_code == 404, (r.status_code, r.text)

    # Delete a file, then bring it back from the trash.
    page.goto(f"/web/browse/{top}/new/")
    status = submit(page, row(page, "a.txt").locator("form.delete button"), "/web/delete")
    assert status == 303, status
    expect(row(page, "a.txt")).to_have_count(0)
    r = get(http, f"{top}/new/a.txt")
    assert r.status_code == 404, (r.status_code, r.text)
    page.locator("a#nav-trash").click()
    page.wait_for_url(re.compile(r"/web/trash"))
    trashed = page.locator(f'table#trash tr.trashed[data-path="{top}/new/a.txt"]')
    expect(trashed).to_have_count(1)
    shot(page, screenshots, "trash.png")
    status = submit(page, trashed.locator("form.undelete button"), "/web/undelete")
    assert status == 303, status
    expect(page.locator(f'table#trash tr.trashed[data-path="{top}/new/a.txt"]')).to_have_count(0)
    r = get(http, f"{top}/new/a.txt")
    assert r.content == b"contents of a", (r.status_code, r.text)
    r = page.request.get(f"/web/file/{top}/new/a.txt")
    assert r.status == 200 and r.body() == b"contents of a", (r.status, r.text())


# ---------------------------------------------------------------- versions


def test_restore_older_version(cluster, http, admin_page, screenshots):
    top = unique("versions")
    path = f"{top}/notes.md"
    v1 = b"# Version one\n\nThe *first* words.\n\n- a\n- b\n"
    v2 = b"# Version two\n\nRewritten.\n"
    assert put(http, path, v1)["version"] == 1
    assert put(http, path, v2)["version"] == 2

    page = admin_page
    page.goto(f"/web/view/{path}")
    expect(page.locator("h1#file-name")).to_contain_text("notes.md")
    expect(page.locator("#preview .markdown h1")).to_have_text("Version two")
    expect(page.locator("#preview .markdown")).not_to_contain_text("# Version")
    shot(page, screenshots, "preview.png")
    versions = page.locator("table#versions tr.version")
    expect(versions).to_have_count(2)
    latest, older = (page.locator(f'table#versions tr.version[data-version="{n}"]') for n in (2, 1))
    expect(latest.locator("form.restore")).to_have_count(0)
    href = older.locator("a.download-version").get_attribute("href")
    assert page.request.get(href).body() == v1, href

    assert submit(page, older.locator("form.restore button"), "/web/restore") == 303
    assert get(http, path).content == v1
    listed = http.get(f"/versions/{path}").json()["versions"]
    assert len(listed) == 3 and max(listed, key=lambda v: v["version"])["sha256"] == sha(v1), listed
    page.goto(f"/web/view/{path}")
    expect(page.locator("table#versions tr.version")).to_have_count(3)
    expect(page.locator("#preview .markdown h1")).to_have_text("Version one")
    shot(page, screenshots, "versions.png")


# ---------------------------------------------------------------- video preview


def video_passes(page, seconds: float, timeout_ms: int = 15_000) -> float:
    """Wait until ``#preview video`` has played past ``seconds``; its currentTime. Polled inside one
    ``evaluate`` (``wait_for_function`` evaluates strings, which the page's CSP forbids: no unsafe-eval)."""
    return page.evaluate("""async ([seconds, timeout]) => {
        const v = document.querySelector('#preview video'), start = performance.now();
        while (v.currentTime <= seconds) {
            if (v.error) throw new Error(`video error ${v.error.code}: ${v.error.message}`);
            if (performance.now() - start > timeout)
                throw new Error(`currentTime ${v.currentTime} did not pass ${seconds} in ${timeout} ms`);
            await new Promise(resolve => setTimeout(resolve, 50));
        }
        return v.currentTime; }""", [seconds, timeout_ms])


def test_video_preview_plays_and_seeks_with_ranges(cluster, http, admin_page, video_clip, screenshots):
    top = unique("video")
    path = f"{top}/clip.webm"
    put(http, path, video_clip)
    page = admin_page
    responses: list[tuple[str, int]] = []
    page.on("response", lambda r: responses.append((urlparse(r.url).path, r.status)))
    page.goto(f"/web/view/{path}")
    video = page.locator("#preview video")
    expect(video).to_have_count(1)
    page.evaluate("""async () => { const v = document.querySelector('#preview video');
                                   v.muted = true; await v.play(); }""")
    video_passes(page, 0.5)
    duration = page.evaluate("document.querySelector('#preview video').duration")
    assert 14 <= duration <= 16, duration
    seeked_to = page.evaluate("""() => new Promise((resolve, reject) => {
        const v = document.querySelector('#preview video');
        const t = setTimeout(() => reject(new Error('no seeked event within 10 s')), 10000);
        v.addEventListener('seeked', () => { clearTimeout(t); resolve(v.currentTime); }, {once: true});
        v.addEventListener('error', () => { clearTimeout(t); reject(new Error('video error ' + v.error.code)); },
                           {once: true});
        v.currentTime = 11; })""")
    assert 10 <= seeked_to <= 12, seeked_to
    video_passes(page, 11.5)  # and plays on from there
    assert page.evaluate("document.querySelector('#preview video').error") is None
    shot(page, screenshots, "video.png")
    statuses = [s for p, s in responses if p == f"/web/file/{path}"]
    assert 206 in statuses, responses


# ---------------------------------------------------------------- admin


def test_admin_page_shows_killed_server_unhealthy(make_cluster, new_page, screenshots):
    c = make_cluster()
    with authed_client(base_url=c.url) as api:
        for i in range(3):
            put(api, f"admin/file-{i}.bin", random_bytes(20_000, seed=i))
    page = new_page(c.url)
    assert login(page, *ROOT).status == 303
    page.locator("a#nav-admin").click()
    page.wait_for_url(re.compile(r"/web/admin/?$"))
    servers = page.locator("table#servers tr.server")
    expect(servers).to_have_count(3)
    ring = {s["url"]: s["server_id"] for s in c.ring()["servers"]}
    ids = [ring[s.url] for s in c.servers]
    for sid in ids:
        expect(page.locator(f'tr.server[data-server-id="{sid}"] td.state')).to_have_text("healthy")
    assert page.locator("#replication-factor").inner_text().strip() == "3"
    assert page.locator("#ring-epoch").inner_text().strip().isdigit()
    assert page.locator("#min-write-replicas").inner_text().strip().isdigit()
    expect(page.locator("svg#ring-chart")).to_be_visible()
    assert submit(page, page.locator("form#run-fsck button"), "/web/admin/fsck") in (200, 303)
    expect(page.locator("#fsck #lost")).to_have_text(re.compile(r"^\s*0\s*$"))
    expect(page.locator("#fsck #under-replicated")).to_have_text(re.compile(r"^\s*0\s*$"))

    victim, others = ids[1], [ids[0], ids[2]]
    c.servers[1].kill()

    def state(sid: str) -> str | None:
        cell = page.locator(f'tr.server[data-server-id="{sid}"] td.state')
        return cell.inner_text().strip() if cell.count() else None

    def shows_down() -> bool:
        page.reload()
        return state(victim) in ("unhealthy", "removed")

    wait_until(shows_down, 20, interval=0.2, what="the admin page to show the killed server unhealthy")
    assert [state(sid) for sid in others] == ["healthy", "healthy"]
    # fsck now finds every chunk with one copy missing, none lost.
    assert submit(page, page.locator("form#run-fsck button"), "/web/admin/fsck") in (200, 303)
    expect(page.locator("#fsck #under-replicated")).to_have_text(re.compile(r"^\s*[1-9]\d*\s*$"))
    expect(page.locator("#fsck #lost")).to_have_text(re.compile(r"^\s*0\s*$"))
    shot(page, screenshots, "admin.png")


# ---------------------------------------------------------------- what a key may do


def test_read_only_key_sees_no_write_controls_and_is_refused(cluster, http, new_page):
    top = unique("readonly")
    path = f"{top}/doc.txt"
    put(http, path, b"first")
    put(http, path, b"second")
    put(http, f"{top}/sub/x.txt", b"x")
    name = unique("reader")
    access, secret = make_key(http, name, [("", "read")])

    page = new_page(cluster.url)
    assert login(page, access, secret).status == 303
    expect(page.locator("#whoami")).to_contain_text(name)
    expect(page.locator("a#nav-admin")).to_have_count(0)
    expect(page.locator("a#nav-keys")).to_have_count(0)
    for where in ("/web/browse/", f"/web/browse/{top}/"):
        page.goto(where)
        for sel in ("#upload-zone", "input#file-input", "input#folder-input", "form#mkdir", "form.delete", "form.rename"):
            assert page.locator(sel).count() == 0, (where, sel)
    assert names(page) == ["sub", "doc.txt"]
    page.goto(f"/web/view/{path}")
    expect(page.locator("table#versions tr.version")).to_have_count(2)
    expect(page.locator("a#download")).to_have_count(1)
    for sel in ("form.restore", "form.delete", "form.rename"):
        assert page.locator(sel).count() == 0, sel
    assert page.request.get(f"/web/file/{path}").body() == b"second"  # reading works
    assert page.request.get("/web/admin", max_redirects=0).status == 403
    assert page.request.get("/web/admin/keys", max_redirects=0).status == 403

    # The server refuses the writes anyway, with a valid session and CSRF token.
    token = csrf_token(page)
    r = page.request.put(f"/web/upload/{top}/x.txt", data=b"sneaky", headers={"X-CSRF-Token": token})
    assert r.status == 403, (r.status, r.text())
    for endpoint, form in (("/web/delete", {"path": path}),
                           ("/web/rename", {"src": path, "dst": f"{top}/moved.txt"}),
                           ("/web/restore", {"path": path, "version": "1"}),
                           ("/web/mkdir", {"folder": top, "name": "newdir"})):
        r = page.request.post(endpoint, form={**form, "csrf": token, "back": f"/web/browse/{top}/"},
                              headers={"Accept": "text/html"}, max_redirects=0)  # as a browser's form POST
        assert r.status == 403, (endpoint, r.status, r.text()[:300])
        assert re.search(r'class="[^"]*\berror\b', r.text()), (endpoint, r.text()[:300])
    # And a form the browser itself submits (built in the page, since the page offers none): the error page.
    with page.expect_response(lambda r: r.request.method == "POST" and path_of_url(r.url) == "/web/delete") as info:
        page.evaluate("""([path, csrf, back]) => {
            const f = document.createElement('form');
            f.method = 'post'; f.action = '/web/delete';
            for (const [k, v] of Object.entries({path, csrf, back})) {
                const i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v; f.append(i); }
            document.body.append(f); f.submit(); }""", [path, token, f"/web/browse/{top}/"])
    assert info.value.status == 403
    page.wait_for_load_state()
    expect(page.locator(".error")).to_be_visible()
    assert get(http, path).content == b"second"
    assert len(http.get(f"/versions/{path}").json()["versions"]) == 2
    assert get(http, f"{top}/x.txt").status_code == 404
    assert get(http, f"{top}/moved.txt").status_code == 404


def test_post_without_csrf_is_refused_even_for_an_admin(cluster, http, admin_page):
    top = unique("csrf")
    path = f"{top}/keep.txt"
    put(http, path, b"keep me")
    page = admin_page
    page.goto(f"/web/browse/{top}/")
    token = csrf_token(page)
    back = f"/web/browse/{top}/"

    for headers in ({}, {"X-CSRF-Token": "not-the-token"}):
        r = page.request.put(f"/web/upload/{top}/new.txt", data=b"no token", headers=headers)
        assert r.status == 403, (headers, r.status, r.text())
    for form in ({"path": path, "back": back}, {"path": path, "back": back, "csrf": "not-the-token"}):
        r = page.request.post("/web/delete", form=form, max_redirects=0)
        assert r.status == 403, (form, r.status)
    r = page.request.post("/web/mkdir", form={"folder": top, "name": "d", "back": back}, max_redirects=0)
    assert r.status == 403
    assert get(http, path).content == b"keep me"
    assert get(http, f"{top}/new.txt").status_code == 404

    # The same requests with the token work: the refusals above were the token's doing.
    r = page.request.put(f"/web/upload/{top}/new.txt", data=b"with token", headers={"X-CSRF-Token": token})
    assert r.status == 201, (r.status, r.text())
    assert get(http, f"{top}/new.txt").content == b"with token"
    r = page.request.post("/web/delete", form={"path": path, "back": back, "csrf": token}, max_redirects=0)
    assert r.status == 303, r.status
    assert get(http, path).status_code == 404

    # Logging in needs the login form's token too.
    fresh = page.context.browser.new_context(base_url=cluster.url)
    try:
        r = fresh.request.post("/web/login", form={"access_key": ROOT_ACCESS_KEY, "secret_key": ROOT_SECRET_KEY,
                                                   "next": "/web/browse/"}, max_redirects=0)
        assert r.status != 303 and not any(c["name"] == "ringfs_session" and c["value"] for c in fresh.cookies()), \
            (r.status, fresh.cookies())
    finally:
        fresh.close()


def test_keys_page_creates_and_deletes_a_key(cluster, http, admin_page, new_page, screenshots):
    top = unique("keys")
    put(http, f"{top}/doc.txt", b"doc")
    page = admin_page
    page.locator("a#nav-keys").click()
    page.wait_for_url(re.compile(r"/web/admin/keys/?$"))
    name = unique("writer")
    form = page.locator("form#create-key")
    form.locator("input[name=name]").fill(name)
    form.locator("textarea[name=grants]").fill(f"{top}/ write")
    expect(form.locator("input[name=admin][type=checkbox]")).not_to_be_checked()
    assert submit(page, form.locator("button, [type=submit]").first, "/web/admin/keys") in (200, 201, 303)
    access = page.locator("#new-access-key").inner_text().strip()
    secret = page.locator("#new-secret-key").inner_text().strip()
    assert access and secret
    key_row = page.locator(f'table#keys tr.key[data-access-key="{access}"]')
    expect(key_row).to_have_count(1)
    expect(key_row).to_contain_text(name)
    shot(page, screenshots, "keys.png")
    listed = {k["access_key"]: k for k in http.get("/admin/keys").json()["keys"]}
    assert listed[access]["name"] == name and not listed[access]["admin"]
    assert [(g["prefix"].rstrip("/"), g["access"]) for g in listed[access]["grants"]] == [(top, "write")]

    # The new key logs in and may write in its folder only.
    other = new_page(cluster.url)
    assert login(other, access, secret).status == 303
    other.goto(f"/web/browse/{top}/")
    expect(other.locator("#upload-zone")).to_be_visible()
    expect(other.locator("form.delete")).to_have_count(1)
    r = other.request.put(f"/web/upload/{top}/by-key.txt", data=b"mine", headers={"X-CSRF-Token": csrf_token(other)})
    assert r.status == 201, r.text()
    r = other.request.put(f"/web/upload/elsewhere-{top}.txt", data=b"no", headers={"X-CSRF-Token": csrf_token(other)})
    assert r.status == 403, r.status

    # Deleted through the page: gone from the list, and it logs in no more.
    page.goto("/web/admin/keys")
    assert submit(page, key_row.locator("form.delete-key button"), "/web/admin/keys/delete") == 303
    expect(page.locator(f'table#keys tr.key[data-access-key="{access}"]')).to_have_count(0)
    assert access not in {k["access_key"] for k in http.get("/admin/keys").json()["keys"]}
    third = new_page(cluster.url)
    assert login(third, access, secret).status == 401
    expect(third.locator(".error")).to_be_visible()
