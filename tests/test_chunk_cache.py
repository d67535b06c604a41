"""The user app's chunk cache (``user_app/chunk_cache.py``) on real processes: a chunk read once is served
again with every chunk server killed, a new version is never served stale, a file above
``CHUNK_CACHE_MAX_FILE`` is not admitted, and with the cache off the same reads fail."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.utils.data import random_bytes
from user_app.client import Client, ClientError
from tests.utils.auth import http

pytestmark = pytest.mark.timeout(90)

CACHE_ENV = {"CHUNK_CACHE_BYTES": str(8 * 1024 * 1024), "CHUNK_CACHE_MAX_FILE": str(64 * 1024)}


def cache_hits(url: str) -> float:
    text = http.get(url + "/metrics").text
    m = re.search(r'^ringfs_user_chunk_cache_lookups_total\{result="hit"\} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def test_chunks_read_once_are_served_with_every_chunk_server_dead(make_cluster):
    cluster = make_cluster(env=CACHE_ENV)
    with Client(cluster.url) as c:
        c.put("docs/report.txt", random_bytes(10_000))
        report = random_bytes(10_000)
        c.put("docs/report.txt", report)  # version 2: new chunks, new manifest
        batch = {f"docs/batch/{i}.txt": random_bytes(3000 + i) for i in range(5)}
        c.put_many(list(batch.items()))
        big = random_bytes(100_000)  # above CHUNK_CACHE_MAX_FILE: streamed, never admitted
        c.put("media/big.bin", big)
        unread = random_bytes(5000)
        c.put("docs/unread.txt", unread)

        assert c.get("docs/report.txt") == report
        assert [d for _, _, d in c.get_many(list(batch))] == list(batch.values())
        assert c.get("media/big.bin") == big
        hits = cache_hits(cluster.url)

        for server in cluster.servers:
            server.kill()
        assert c.get("docs/report.txt") == report
        assert c.get("docs/report.txt", byte_range=(1000, 2999)) == report[1000:3000]
        assert [(s, d) for _, s, d in c.get_many(list(batch))] == [(200, d) for d in batch.values()]
        assert cache_hits(cluster.url) > hits
        for path in ("docs/unread.txt", "media/big.bin"):
            with pytest.raises(ClientError) as exc:
                c.get(path)
            assert exc.value.status == 503, exc.value


def test_a_new_version_is_never_served_from_the_cache(make_cluster):
    cluster = make_cluster(env=CACHE_ENV)
    with Client(cluster.url) as c:
        old, new = random_bytes(8000), random_bytes(8000)
        c.put("docs/plan.txt", old)
        assert c.get("docs/plan.txt") == old
        c.put("docs/plan.txt", new)
        assert c.get("docs/plan.txt") == new
        assert c.get("docs/plan.txt", version=1) == old


def test_with_the_cache_off_reads_need_the_chunk_servers(make_cluster):
    cluster = make_cluster(env={**CACHE_ENV, "CHUNK_CACHE_BYTES": "0"})
    with Client(cluster.url) as c:
        data = random_bytes(10_000)
        c.put("docs/report.txt", data)
        assert c.get("docs/report.txt") == data
        for server in cluster.servers:
            server.kill()
        with pytest.raises(ClientError) as exc:
            c.get("docs/report.txt")
        assert exc.value.status == 503, exc.value
