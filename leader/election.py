"""Active and standby leaders over one PostgreSQL (README "Standby leaders").

Any number of leader processes may share one ``DATABASE_URL`` on PostgreSQL. The one holding a session
advisory lock (``pg_try_advisory_lock(LOCK_KEY)``, on a connection of its own) is **active**; the others
are **standbys** that retry the lock every ``RETRY_INTERVAL`` seconds and answer every request but
``/healthz`` and ``/metrics`` with ``503`` naming the active leader (``StandbyMiddleware``). PostgreSQL
is the consensus: RingFS runs none of its own (as HDFS's NameNodes lean on their quorum journal).

* **Taking over.** The new active leader increments the term in ``leader_state`` (an ``UPDATE`` that
  waits for the old leader's running write transactions, ``leader/store.py``), then rebuilds the ring
  and the health-check state from SQL and starts the background jobs (``on_active``).
* **Fencing.** Every write checks the term in its own transaction, so an old leader commits nothing
  once a new term exists.
* **Losing the lock without knowing it.** A paused (``SIGSTOP``) or partitioned leader still holds its
  PostgreSQL session, so the lock alone would never move. The lock's connection therefore sets
  ``idle_session_timeout`` (``LOCK_SESSION_TIMEOUT``), and the active leader sends a heartbeat on it
  every ``HEARTBEAT_INTERVAL``. A leader that stops sending heartbeats loses its session, and with it
  the lock, within that timeout. It serves nothing once ``LEASE`` seconds have passed since its last
  good heartbeat (``LEASE`` < ``LOCK_SESSION_TIMEOUT``), so it has stopped before anyone else can take
  over. Every pooled connection also sets ``idle_in_transaction_session_timeout`` (``leader/db.py``), so a
  transaction left open by a paused leader ends, and a takeover waits for it at most that long.
* **Stepping down.** When a heartbeat fails, the leader becomes a standby: background jobs paused
  (``on_standby``), requests answered with 503, and the lock retried.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable

import asyncpg
from sqlalchemy import update
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import make_url

from leader.models import LeaderState
from leader.store import Store

log = logging.getLogger("ringfs.leader.election")

LOCK_KEY = 0x52696E67465321  # "RingFS!" as a 64-bit advisory lock key
# A stalled event loop (a busy 2-core machine) must not cost the lead: the lease leaves 4 heartbeats of
# slack, and the session outlives the lease by 2 s. A paused leader is replaced after about
# LOCK_SESSION_TIMEOUT + RETRY_INTERVAL seconds; a killed one at once (its connection closes).
HEARTBEAT_INTERVAL = 1.0  # seconds between heartbeats on the lock's connection
LEASE = 4.0  # seconds after its last good heartbeat that an active leader still serves
LOCK_SESSION_TIMEOUT = 6.0  # seconds an idle lock connection lives (PostgreSQL's idle_session_timeout)
RETRY_INTERVAL = 0.5  # seconds between a standby's tries for the lock
CONNECT_TIMEOUT = 5.0

ACTIVE, STANDBY = "active", "standby"


def asyncpg_connect_args(database_url: str) -> dict:
    """``asyncpg.connect`` keyword arguments for a SQLAlchemy ``postgresql+asyncpg://`` URL, translated by
    SQLAlchemy's own dialect, so that a multi-host URL (``?host=A:5432&host=B:5432``) with
    ``target_session_attrs=read-write`` reaches the same primary the pool does."""
    _, kwargs = PGDialect_asyncpg().create_connect_args(make_url(database_url))
    return kwargs


class Election:
    """One leader's part in the election. ``on_active(term)`` runs when it becomes active (before it
    serves), ``on_standby()`` when it stops being active."""

    def __init__(self, database_url: str, advertise_url: str, store: Store,
                 on_active: Callable[[int], Awaitable[None]], on_standby: Callable[[], Awaitable[None]]) -> None:
        self.connect_args = asyncpg_connect_args(database_url)
        self.advertise_url = advertise_url
        self.store = store
        self.on_active = on_active
        self.on_standby = on_standby
        self.role = STANDBY
        self.term: int | None = None
        self.active_url: str | None = None  # the active leader's URL, as a standby last read it
        self._last_heartbeat = float("-inf")  # monotonic seconds
        # Set once the first try for the lock has an outcome (active, standby, or the database down), so
        # that a leader that can be active is so before it serves its first request.
        self.first_try = asyncio.Event()

    def is_active(self) -> bool:
        """Whether this leader may serve now: active, and its lease (last heartbeat) not expired."""
        return self.role == ACTIVE and time.monotonic() - self._last_heartbeat < LEASE

    async def run(self) -> None:
        """Hold or chase the lock until cancelled."""
        while True:
            conn = None
            try:
                conn = await asyncpg.connect(**self.connect_args, timeout=CONNECT_TIMEOUT, server_settings={
                    "idle_session_timeout": str(int(LOCK_SESSION_TIMEOUT * 1000)),
                    "application_name": "ringfs-leader-lock"})
                await self._wait_for_lock(conn)
                await self._become_active()
                await self._heartbeat(conn)
            except asyncio.CancelledError:  # shutdown
                if self.role == ACTIVE:
                    log.info("leader at %s stops (term %s)", self.advertise_url, self.term)
                    self.role = STANDBY
                raise
            except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("leader election: %s: %s", type(exc).__name__, exc)
            except Exception:
                log.exception("leader election failed")
            finally:
                self.first_try.set()
                if self.role == ACTIVE:
                    await self._step_down()
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(RETRY_INTERVAL)

    async def _wait_for_lock(self, conn) -> None:
        while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY, timeout=CONNECT_TIMEOUT):
            self.active_url = await conn.fetchval("SELECT active_url FROM leader_state WHERE id = 1",
                                                  timeout=CONNECT_TIMEOUT)
            self.first_try.set()
            await asyncio.sleep(RETRY_INTERVAL)
        self._last_heartbeat = time.monotonic()

    async def _become_active(self) -> None:
        term = await take_term(self.store, self.advertise_url)
        self.store.term, self.term, self.active_url = term, term, self.advertise_url
        await self.on_active(term)
        self.role = ACTIVE
        self.first_try.set()
        log.warning("leader at %s is active, term %d", self.advertise_url, term)

    async def _heartbeat(self, conn) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL)
            await conn.fetchval("SELECT 1", timeout=LEASE)
            self._last_heartbeat = time.monotonic()

    async def _step_down(self) -> None:
        log.warning("leader at %s lost the lock (term %s): standby now", self.advertise_url, self.term)
        self.role = STANDBY
        try:
            await self.on_standby()
        except Exception:
            log.exception("stepping down failed")


async def take_term(store: Store, advertise_url: str) -> int:
    """Increment the leader term and name this leader active; the new term. Waits for the running write
    transactions of the previous term (their ``FOR SHARE`` of the row)."""
    async with store.sessions() as session, session.begin():
        result = await session.execute(
            update(LeaderState).where(LeaderState.id == 1)
            .values(term=LeaderState.term + 1, active_url=advertise_url, taken_at=time.time())
            .returning(LeaderState.term))
        return int(result.scalar_one())
