"""How long one folder of many files takes to list: WebDAV ``PROPFIND`` (depth 1, all properties, as a file
manager asks), the user API's ``GET /list``, and the web page: its first page of 200 rows as HTML, every
row in pages of 2,000, and (when Playwright and /usr/bin/chromium are there) the first page opened in
Chromium until its ``load`` event. Prints the median of ``--repeat`` listings of each.

    python -m benchmarks.folder_listing                   # 10,000 files of 100 B, 5 listings each
    python -m benchmarks.folder_listing --files 2000 --repeat 3

Starts its own cluster (leader, 3 chunk servers, 1 user app, replication 3, SQLite) under a temp folder and
writes the files with ``POST /batch/write``.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.cluster import start_cluster
from shared.protocol.batches import encode_batch_files
from tests.conftest import FAST_ENV
from tests.utils.auth import ROOT

BATCH = 1000  # files per POST /batch/write
CSRF_RE = re.compile(r'name="csrf" value="([0-9a-f]+)"')


def fill(client: httpx.Client, folder: str, files: int, size: int) -> None:
    for start in range(0, files, BATCH):
        batch = [(f"{folder}/file {i:06d}.txt", os.urandom(size)) for i in range(start, min(files, start + BATCH))]
        r = client.post("/batch/write", content=encode_batch_files(batch))
        r.raise_for_status()
        assert all("error" not in x for x in r.json()["results"])


def timed(call) -> float:
    start = time.perf_counter()
    r = call()
    assert r.status_code in (200, 207), (r.status_code, r.text[:300])
    return time.perf_counter() - start


def web_session(url: str) -> httpx.Client:
    """A client logged in to the web page with the root key (its session cookie kept)."""
    web = httpx.Client(base_url=url, timeout=600)
    token = CSRF_RE.search(web.get("/web/login").text).group(1)
    r = web.post("/web/login", data={"csrf": token, "access_key": ROOT[0], "secret_key": ROOT[1]})
    assert r.status_code == 303, r.text
    return web


def whole_folder(web: httpx.Client, folder: str, files: int) -> httpx.Response:
    """Every row of the folder page, 2,000 at a time (what "load more" fetches, in larger pages)."""
    rows = 0
    for offset in range(0, files, 2000):
        r = web.get(f"/web/browse/{folder}/", params={"offset": offset, "limit": 2000})
        assert r.status_code == 200
        rows += r.text.count('<tr class="entry"')
    assert rows == files, rows
    return r


def in_chromium(url: str, folder: str, repeat: int) -> list[float] | None:
    """Seconds from navigation to the ``load`` event of the folder's first page in Chromium, or None
    without Playwright or /usr/bin/chromium."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not Path("/usr/bin/chromium").exists():
        return None
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(url + "/web/login")
        page.fill("input[name=access_key]", ROOT[0])
        page.fill("input[name=secret_key]", ROOT[1])
        page.click("button[type=submit]")
        page.wait_for_url("**/web/browse/**")
        runs = []
        for _ in range(repeat):
            start = time.perf_counter()
            page.goto(f"{url}/web/browse/{folder}/", wait_until="load")
            runs.append(time.perf_counter() - start)
        assert page.locator("tr.entry").count() == 200
        browser.close()
    return runs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--file-size", type=int, default=100, help="bytes per file (default 100)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ringfs-listbench-") as tmp:
        cluster = start_cluster(Path(tmp), FAST_ENV)
        try:
            with httpx.Client(base_url=cluster.url, auth=ROOT, timeout=600) as client:
                fill(client, "big", args.files, args.file_size)
                propfind = [timed(lambda: client.request("PROPFIND", "/dav/big/", headers={"Depth": "1"}))
                            for _ in range(args.repeat)]
                listing = [timed(lambda: client.get("/list/big")) for _ in range(args.repeat)]
                web = web_session(cluster.url)
                try:
                    first_page = [timed(lambda: web.get("/web/browse/big/")) for _ in range(args.repeat)]
                    every_row = [timed(lambda: whole_folder(web, "big", args.files)) for _ in range(args.repeat)]
                finally:
                    web.close()
                browser = in_chromium(cluster.url, "big", args.repeat)
                answer = client.request("PROPFIND", "/dav/big/", headers={"Depth": "1"})
                assert answer.text.count("<ns0:response>") == args.files + 1
        finally:
            cluster.stop()
    print(f"{args.files} files in one folder, median of {args.repeat}:")
    print(f"  PROPFIND depth 1 (WebDAV)  {statistics.median(propfind):8.3f} s   runs {[round(x, 3) for x in propfind]}")
    print(f"  GET /list (user API)       {statistics.median(listing):8.3f} s   runs {[round(x, 3) for x in listing]}")
    print(f"  web page, first 200 rows   {statistics.median(first_page):8.3f} s   runs {[round(x, 3) for x in first_page]}")
    print(f"  web page, every row        {statistics.median(every_row):8.3f} s   runs {[round(x, 3) for x in every_row]}")
    if browser is not None:
        print(f"  web page in Chromium, load {statistics.median(browser):8.3f} s   runs {[round(x, 3) for x in browser]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
