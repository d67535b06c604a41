"""A real Chromium driven by Playwright (sync API) for the web page's tests (``tests/test_web_page.py``).

Playwright comes from PyPI, the browser from Debian (``/usr/bin/chromium``): ``playwright install`` would
download its own build, which CI cannot. Without either the tests skip, or fail with
``RINGFS_REQUIRE_BROWSER=1`` (what ``.ci/run`` sets), like ``RINGFS_REQUIRE_WEBDAV_CLIENTS``.

Fixtures (import them into the test module): ``browser`` (one Chromium per module), ``new_page``
(``new_page(base_url)``: a page in a fresh context, 1280x800, closed at teardown; its console errors are
printed at teardown so a failing test shows them) and ``screenshots`` (where ``shot`` saves:
``$RINGFS_SCREENSHOTS``, relative to the repository, else the test's ``tmp_path``).

Helpers drive the page only through the ids and classes of the page's contract: ``login``, ``entries``
(the rows of ``table#entries``), ``row``, ``submit`` (click a form's button and wait for the POST's answer),
``drop_files`` (a trusted drop of files or folders from disk, see below) and ``UploadWatcher`` (every text
``li.upload .status`` showed, although the page reloads itself when its uploads are done).

Drag and drop: ``drop_files`` sends Chrome DevTools ``Input.dispatchDragEvent`` (dragEnter, dragOver, drop)
with paths on disk, at the centre of the drop target. Chromium then runs a real drag: the events are
trusted, ``dataTransfer.files`` holds real ``File`` objects, and ``dataTransfer.items[i].webkitGetAsEntry()``
gives file and directory entries, so a dropped folder can be walked as a user's drop would be. (A
``DataTransfer`` built in the page and passed to ``dispatch_event`` yields untrusted events whose items have
no entries, which a page walking entries for folder support does not see as files.)
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import pytest

REQUIRE_ENV = "RINGFS_REQUIRE_BROWSER"
CHROMIUM = Path("/usr/bin/chromium")
VIEWPORT = {"width": 1280, "height": 800}
SESSION_COOKIE = "ringfs_session"
SCREENSHOTS_ENV = "RINGFS_SCREENSHOTS"
REPO = Path(__file__).resolve().parents[2]
TIMEOUT_MS = 15_000  # Playwright's default for actions, navigations and expect() in these tests


def _missing(what: str) -> None:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{what}; {REQUIRE_ENV}=1 requires it", pytrace=False)
    pytest.skip(f"{what}", allow_module_level=True)


def require_browser():
    """Playwright's sync API module; skip the calling test module (or fail it with ``RINGFS_REQUIRE_BROWSER=1``)
    when Playwright or Debian's Chromium is missing. Call at module level."""
    try:
        from playwright import sync_api
    except ImportError:
        _missing("playwright is not installed (pip install playwright)")
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        _missing(f"{CHROMIUM} is not installed (apt-get install chromium)")
    sync_api.expect.set_options(timeout=TIMEOUT_MS)
    return sync_api


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
    except Exception as e:  # noqa: BLE001 - a browser that does not start is "missing" too
        pw.stop()
        if os.environ.get(REQUIRE_ENV) == "1":
            raise
        pytest.skip(f"{CHROMIUM} does not start: {e}")
    yield b
    b.close()
    pw.stop()


@pytest.fixture
def new_page(browser):
    """Factory: ``new_page(base_url)`` is a page in a context of its own (own cookies), 1280x800, downloads
    accepted, ``confirm()`` dialogs accepted; ``page.request`` shares the context's cookies."""
    contexts = []
    problems: list[str] = []

    def make(base_url: str):
        ctx = browser.new_context(base_url=base_url, viewport=VIEWPORT, accept_downloads=True)
        ctx.set_default_timeout(TIMEOUT_MS)
        contexts.append(ctx)
        page = ctx.new_page()
        page.on("dialog", lambda d: d.accept())
        page.on("console", lambda m: problems.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
        return page

    yield make
    for ctx in contexts:
        ctx.close()
    if problems:
        print("browser console errors:\n  " + "\n  ".join(problems))


@pytest.fixture
def screenshots(tmp_path) -> Path:
    where = os.environ.get(SCREENSHOTS_ENV)
    d = (REPO / where) if where and not Path(where).is_absolute() else Path(where) if where else tmp_path / "screenshots"
    d.mkdir(parents=True, exist_ok=True)
    return d


def shot(page, directory: Path, name: str) -> Path:
    """A full-page screenshot ``directory/name``; asserts it is a non-empty PNG."""
    path = directory / name
    page.screenshot(path=str(path), full_page=True)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    return path


# ---------------------------------------------------------------- pages


def login(page, access_key: str, secret_key: str, next_path: str | None = None):
    """Log in through ``form#login``; returns the POST's response (303 on success, 401 on failure)."""
    page.goto("/web/login" + (f"?next={next_path}" if next_path else ""))
    form = page.locator("form#login")
    form.locator("input[name=access_key]").fill(access_key)
    form.locator("input[name=secret_key]").fill(secret_key)
    with page.expect_response(lambda r: r.request.method == "POST" and urlparse(r.url).path == "/web/login") as info:
        form.locator("button[type=submit]").click()
    page.wait_for_load_state()
    return info.value


def session_cookie(page) -> str | None:
    for c in page.context.cookies():
        if c["name"] == SESSION_COOKIE and c["value"]:
            return c["value"]
    return None


def csrf_token(page) -> str:
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert token, "the page has no <meta name=csrf-token>"
    return token


def path_of(page) -> str:
    return urlparse(page.url).path


ENTRIES_JS = """rows => rows.map(r => ({
    name: (r.dataset.name || '').replace(/\\/$/, ''), path: (r.dataset.path || '').replace(/\\/$/, ''),
    type: r.dataset.type, size: (r.querySelector('td.size') || {}).textContent,
}))"""


def entries(page) -> list[dict]:
    """The rows of ``table#entries`` in order: ``name``, ``path`` (a trailing / stripped), ``type``, ``size``."""
    return page.eval_on_selector_all("table#entries tbody tr.entry", ENTRIES_JS)


def names(page) -> list[str]:
    return [e["name"] for e in entries(page)]


def row(page, name: str):
    """The listing row of ``name`` (a folder's ``data-name`` may end in / or not)."""
    return page.locator(f'table#entries tbody tr.entry[data-name="{name}"], '
                        f'table#entries tbody tr.entry[data-name="{name}/"]')


def submit(page, button, endpoint: str) -> int:
    """Click ``button`` (a form's submit) and wait for the answer to the POST to ``endpoint`` and for the
    page it leads to; return the POST's status."""
    with page.expect_response(lambda r: r.request.method == "POST" and urlparse(r.url).path == endpoint) as info:
        button.click()
    page.wait_for_load_state()
    return info.value.status


def drop_files(page, selector: str, paths: list[Path]) -> None:
    """Drop files or folders from disk onto ``selector`` as a user's drag would (see the module docstring)."""
    target = page.locator(selector)
    target.scroll_into_view_if_needed()
    box = target.bounding_box()
    assert box is not None, f"{selector} is not visible"
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    data = {"items": [], "files": [str(p) for p in paths], "dragOperationsMask": 1 | 2 | 16}  # copy|link|move
    cdp = page.context.new_cdp_session(page)
    try:
        for kind in ("dragEnter", "dragOver", "drop"):
            cdp.send("Input.dispatchDragEvent", {"type": kind, "x": x, "y": y, "data": data})
    finally:
        cdp.detach()


# Reports every change of an upload's status text to the Python side; installed as an init script so it is
# there before app.js runs, in every document of the page.
_WATCH_UPLOADS_JS = """(() => {
  const seen = {};
  const report = () => document.querySelectorAll('ul#uploads li.upload').forEach(li => {
    const s = li.querySelector('.status');
    const name = li.dataset.name, text = s ? s.textContent.trim() : '';
    if (name !== undefined && seen[name] !== text) { seen[name] = text; window.ringfsUploadStatus(name, text); }
  });
  new MutationObserver(report).observe(document, {subtree: true, childList: true, characterData: true,
                                                  attributes: true});
})();"""


class UploadWatcher:
    """Every status text each ``li.upload`` showed, by its ``data-name``. Create it before loading the page."""

    def __init__(self, page) -> None:
        self.page = page
        self.history: dict[str, list[str]] = {}
        page.expose_binding("ringfsUploadStatus", lambda _source, name, text: self._seen(name, text))
        page.add_init_script(_WATCH_UPLOADS_JS)

    def _seen(self, name: str, text: str) -> None:
        self.history.setdefault(name, []).append(text)

    def latest(self) -> dict[str, str]:
        return {name: texts[-1] for name, texts in self.history.items()}

    def wait_started(self, expected: set[str], timeout: float = 15) -> None:
        self._poll(lambda: expected <= set(self.history), timeout, f"uploads {sorted(expected)} to be listed")

    def wait_done(self, expected: set[str], timeout: float = 60) -> None:
        """Until every one of ``expected`` reads ``done``; fails at once when one reads ``error...``."""
        def done() -> bool:
            latest = self.latest()
            failed = {n: t for n, t in latest.items() if t.lower().startswith("error")}
            assert not failed, f"uploads failed: {failed}"
            return all(latest.get(n) == "done" for n in expected)

        self._poll(done, timeout, f"uploads {sorted(expected)} to read done")

    def _poll(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; statuses seen: {self.history}")
            self.page.wait_for_timeout(50)  # lets Playwright deliver the page's binding calls
