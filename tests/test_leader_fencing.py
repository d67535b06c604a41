"""The leader term fences an old leader's writes, on a real PostgreSQL (leader/store.py): a store whose
term has ended commits nothing, and a takeover waits for the write transactions already running. Needs
``RINGFS_TEST_POSTGRES``."""

from __future__ import annotations

import asyncio
import os

import pytest

from leader.election import take_term
from leader.migrations import run_migrations
from leader.models import Folder
from leader.store import Store
from shared.errors import NotActiveLeader
from tests.conftest import PG_ENV, create_postgres_database

pytestmark = pytest.mark.skipif(not os.environ.get(PG_ENV), reason=f"{PG_ENV} not set")


@pytest.fixture
def database_url():
    url = create_postgres_database("ringfs_fence")
    run_migrations(url)
    return url


def test_a_store_whose_term_ended_commits_nothing(database_url):
    async def scenario() -> None:
        old, new = Store(database_url), Store(database_url)
        try:
            old.term = await take_term(old, "http://old")
            async with old.write() as session:
                session.add(Folder(path="by-old-1", created_at=1.0))
            new.term = await take_term(new, "http://new")
            assert new.term == old.term + 1
            with pytest.raises(NotActiveLeader, match="term"):
                async with old.write() as session:
                    session.add(Folder(path="by-old-2", created_at=1.0))
            with pytest.raises(NotActiveLeader):
                async with old.write_conn() as conn:
                    await conn.execute(Folder.__table__.insert().values(path="by-old-3", created_at=1.0))
            async with new.read() as session:
                paths = {f.path for f in (await session.execute(Folder.__table__.select())).all()}
            assert paths == {"by-old-1"}
        finally:
            await old.dispose()
            await new.dispose()
    asyncio.run(scenario())


def test_a_takeover_waits_for_the_running_write_transaction(database_url):
    async def scenario() -> None:
        old, new = Store(database_url), Store(database_url)
        try:
            old.term = await take_term(old, "http://old")
            order: list[str] = []
            async with old.write() as session:  # holds the term row FOR SHARE until it commits
                takeover = asyncio.create_task(take_term(new, "http://new"))
                await asyncio.sleep(0.5)
                assert not takeover.done(), "the takeover did not wait for the running transaction"
                session.add(Folder(path="committed-before-the-takeover", created_at=1.0))
                order.append("old commits")
            new.term = await takeover
            order.append("new term")
            assert order == ["old commits", "new term"]
            async with new.read() as session:
                assert (await session.get(Folder, "committed-before-the-takeover")) is not None
        finally:
            await old.dispose()
            await new.dispose()
    asyncio.run(scenario())
