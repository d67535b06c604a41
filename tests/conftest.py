"""Fixtures that start real RingFS processes on loopback ports.

``cluster`` is one leader, 3 chunk servers and 1 user app shared by a test module; fault-injection
tests build their own with ``make_cluster`` so a kill never leaks into another test. Intervals are
shortened through the same environment variables an operator would set. Every test cluster runs with
auth on: one cluster secret and one root key (``tests/utils/auth.py``), which ``Client`` and the CLI
find in ``RINGFS_ACCESS_KEY`` / ``RINGFS_SECRET_KEY``.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests.utils.auth import AUTH_ENV, ROOT_ACCESS_KEY, ROOT_SECRET_KEY, authed_client
from tests.utils.s3 import s3_client
from user_app.client.local_cluster import LocalCluster
from user_app.client import Client

os.environ["RINGFS_ACCESS_KEY"], os.environ["RINGFS_SECRET_KEY"] = ROOT_ACCESS_KEY, ROOT_SECRET_KEY

# Fast failure detection and sweeping, so fault tests finish in seconds, not minutes.
FAST_ENV = {
    "HEALTH_CHECK_INTERVAL": "0.5",
    "HEALTH_CHECK_TIMEOUT": "0.4",
    "SWEEP_INTERVAL": "0.5",
    "RING_TTL": "0.5",
    "LOG_LEVEL": "INFO",
    # Reads go to the chunk servers every time, so the fault tests exercise fallback and repair rather
    # than the user app's chunk cache; tests/test_chunk_cache.py turns the cache on.
    "CHUNK_CACHE_BYTES": "0",
    # Drops of handed-off copies count established members only (docs/failure-handling.md); in tests a
    # member is established after 2 s, not in production's 10 minutes.
    "HANDOFF_MIN_MEMBER_AGE": "2",
    **AUTH_ENV,
}


# A PostgreSQL server (``postgresql+asyncpg://user[:password]@host:port``, no database) to keep every
# test cluster's metadata on, each in a fresh database of its own; unset = SQLite in the leader's DATA_DIR.
# ``.ci/run`` sets it for its second pass; ``tests/test_leader.py`` honours the same variable.
PG_ENV = "RINGFS_TEST_POSTGRES"


def create_postgres_database(prefix: str = "ringfs") -> str:
    """Create an empty database with a unique name on ``$RINGFS_TEST_POSTGRES``; return its URL."""
    import asyncio
    import concurrent.futures
    import re
    import uuid

    import asyncpg

    base = os.environ[PG_ENV].rstrip("/")
    name = f"{re.sub(r'[^a-z0-9_]', '_', prefix.lower())[:40]}_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        conn = await asyncpg.connect(base.replace("+asyncpg", "", 1) + "/postgres")
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    # in a thread of its own: the caller may be inside a running event loop (Playwright's sync API runs one)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, create()).result()
    return f"{base}/{name}"


def database_url_for(tmp: Path) -> str:
    """A fresh PostgreSQL database for the cluster under ``tmp`` when ``RINGFS_TEST_POSTGRES`` is set,
    else "" (the leader's default: SQLite under its ``DATA_DIR`` in ``tmp``)."""
    if not os.environ.get(PG_ENV):
        return ""
    return create_postgres_database(f"ringfs_{Path(tmp).name}")


@pytest.fixture
def make_cluster(tmp_path_factory):
    """Factory: ``make_cluster(chunk_servers=5, env={...})`` starts a fresh cluster, stopped at teardown."""
    started: list[LocalCluster] = []

    def make(chunk_servers: int = 3, user_apps: int = 1, replication: int = 3, env: dict | None = None,
             tls: bool = False) -> LocalCluster:
        data = tmp_path_factory.mktemp("cluster")
        c = LocalCluster(data_dir=data, chunk_servers=chunk_servers, user_apps=user_apps, replication=replication,
                         env={**FAST_ENV, **(env or {})}, database_url=database_url_for(data), tls=tls)
        started.append(c)
        return c.start()

    yield make
    for c in started:
        c.stop()


@pytest.fixture
def open_client():
    """Factory: ``open_client(url)`` is a :class:`Client` that is closed at teardown, pass or fail."""
    opened: list[Client] = []

    def open_(url: str, **kw) -> Client:
        opened.append(Client(url, **kw))
        return opened[-1]

    yield open_
    for c in opened:
        c.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A shared healthy cluster: leader, 3 chunk servers, 1 user app, replication factor 3."""
    data = tmp_path_factory.mktemp("shared-cluster")
    c = LocalCluster(data_dir=data, chunk_servers=3, user_apps=1, replication=3, env=FAST_ENV,
                     database_url=database_url_for(data))
    with c:
        yield c


@pytest.fixture(scope="module")
def http(cluster):
    """An httpx client on the shared cluster's user API, with the root key."""
    with authed_client(base_url=cluster.url, timeout=60) as h:
        yield h


@pytest.fixture(scope="module")
def leader(cluster):
    """The shared cluster's leader, called directly with the cluster credential (modules that start
    their own leader define their own ``leader`` fixture)."""
    with authed_client(base_url=cluster.leader_url, timeout=30) as h:
        yield h


@pytest.fixture(scope="module")
def client(cluster):
    with Client(cluster.url) as c:
        yield c


@pytest.fixture(scope="module")
def s3(cluster):
    """boto3 on the shared cluster's S3 port, signed with the root key (``tests/utils/s3.py``)."""
    return s3_client(cluster.s3_url())


@pytest.fixture
def bucket(s3):
    """A new, empty bucket of the shared cluster."""
    name = f"b-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name
