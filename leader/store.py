"""The metadata store handle: a session factory plus the rules for a write transaction.

Every write is one short transaction (``async with store.write() as session``). On SQLite, writers in
this process take an ``asyncio.Lock`` first: SQLite has one writer at a time anyway, and a deferred
transaction that reads and then writes can fail with "database is locked" (``SQLITE_BUSY_SNAPSHOT``) when
another connection wrote in between, which ``busy_timeout`` does not cure. PostgreSQL needs no lock: row
locks and unique constraints (with retries in the callers) keep it correct.

SQL errors are translated here into RingFS errors (``Unavailable``), so the routes never see them.

**Fencing** (standby leaders on PostgreSQL, ``leader/election.py``): while :attr:`Store.term` is set,
every write transaction first reads the ``leader_state`` row ``FOR SHARE`` and goes on only if the term
there is still this leader's. A leader that becomes active increments the term with an ``UPDATE`` of
that row, which waits for the share locks of the transactions already running: so each write of an old
leader either commits before the takeover or sees the new term and commits nothing
(:class:`NotActiveLeader`, 503). ``term`` None (SQLite, one leader): no check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import AsyncIterator

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, OperationalError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from leader.db import create_engine, create_sessionmaker, is_sqlite
from leader.manifest_cache import ManifestCache
from leader.models import LeaderState, RingState
from leader.read_leases import ReadLeases
from shared.errors import NotActiveLeader, Unavailable

log = logging.getLogger("ringfs.leader.store")

_TERM_FOR_SHARE = select(LeaderState.term).where(LeaderState.id == 1).with_for_update(read=True)

# How often a write that lost a unique-constraint race (two writers picking the same version number) is
# retried in a fresh transaction before the caller gets a 503. Each retry sees the winner's row.
WRITE_RETRIES = 20


class Store:
    """Owns the engine and session factory for one ``DATABASE_URL``."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.engine: AsyncEngine = create_engine(database_url)
        self.sessions: async_sessionmaker[AsyncSession] = create_sessionmaker(self.engine)
        self._write_lock = asyncio.Lock() if is_sqlite(database_url) else None
        # Committed versions for GET /manifest and /stat; every mutation of visible versions invalidates
        # it (leader/manifest_cache.py).
        self.cache = ManifestCache()
        # The user apps' read leases (leader/read_leases.py): every mutation that invalidates the cache
        # revokes them first. None granted until the app gives it a transport (leader/app.py).
        self.leases = ReadLeases(0.0, is_busy=self.cache.is_busy)
        # The leader term this process writes under (see the module docstring); None: no fencing.
        self.term: int | None = None

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reads; SQL failures become :class:`Unavailable` (503)."""
        with translate_db_errors():
            async with self.sessions() as session:
                yield session

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction, committed on success, rolled back on any exception.

        :class:`IntegrityError` passes through (callers retry or map it); other SQL failures become
        :class:`Unavailable`.
        """
        lock = self._write_lock or contextlib.nullcontext()
        async with lock:
            with translate_db_errors():
                async with self.sessions() as session, session.begin():
                    await self._fence(session)
                    yield session

    @contextlib.asynccontextmanager
    async def read_conn(self) -> AsyncIterator[AsyncConnection]:
        """A Core connection for reads (no ORM session: the hot paths' cheaper variant of :meth:`read`)."""
        with translate_db_errors():
            async with self.engine.connect() as conn:
                yield conn

    @contextlib.asynccontextmanager
    async def write_conn(self) -> AsyncIterator[AsyncConnection]:
        """A Core connection inside one transaction, with :meth:`write`'s rules (the SQLite write lock,
        committed on success, rolled back on any exception, :class:`IntegrityError` passed through)."""
        lock = self._write_lock or contextlib.nullcontext()
        async with lock:
            with translate_db_errors():
                async with self.engine.begin() as conn:
                    await self._fence(conn)
                    yield conn

    async def _fence(self, conn) -> None:
        """Raises :class:`NotActiveLeader` when another leader has taken a newer term (module docstring)."""
        term = self.term
        if term is None:
            return
        current = (await conn.execute(_TERM_FOR_SHARE)).scalar()
        if current != term:
            log.warning("write refused: this leader's term %d has ended (the term is now %s)", term, current)
            raise NotActiveLeader(f"this leader's term {term} has ended (the term is now {current}): it is no "
                                  "longer the active leader and commits nothing")

    async def ensure_ring_state(self) -> int:
        """Create the single ``ring_state`` row (epoch 0) if missing; return the epoch."""
        async with self.write() as session:
            state = await session.get(RingState, 1)
            if state is None:
                state = RingState(id=1, epoch=0)
                session.add(state)
            return state.epoch

    async def lease_horizon(self) -> float | None:
        """``leader_state.lease_horizon`` (UNIX seconds; None: never set)."""
        async with self.read_conn() as conn:
            return (await conn.execute(select(LeaderState.lease_horizon).where(LeaderState.id == 1))).scalar()

    async def save_lease_horizon(self, horizon: float) -> None:
        """Move ``leader_state.lease_horizon`` to ``horizon`` (UNIX seconds), fenced like every write."""
        async with self.write_conn() as conn:
            await conn.execute(update(LeaderState).where(LeaderState.id == 1).values(lease_horizon=horizon))

    async def dispose(self) -> None:
        await self.engine.dispose()


@contextlib.contextmanager
def translate_db_errors():
    """Map SQL-layer failures (locked database, lost connection) to :class:`Unavailable`; integrity
    violations are left to the caller, which knows what they mean."""
    try:
        yield
    except IntegrityError:
        raise
    except (OperationalError, DBAPIError, OSError) as exc:  # OSError: the server refused a new connection
        log.warning("metadata store error: %s", exc.__class__.__name__, exc_info=True)
        raise Unavailable(f"metadata store unavailable: {exc.__class__.__name__}") from exc


async def epoch_of(session: AsyncSession) -> int:
    return (await session.execute(select(RingState.epoch).where(RingState.id == 1))).scalar_one()
