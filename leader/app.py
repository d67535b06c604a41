"""The leader's FastAPI application: store, membership, background jobs and routers.

``create_app(settings)`` builds it; the lifespan opens the metadata store and, once this leader is active
(at once on SQLite; on PostgreSQL when it wins the election, ``leader/election.py``), loads the cached
ring and runs APScheduler's health-check job (every ``HEALTH_CHECK_INTERVAL`` s), pending sweeper, trash
purge and multipart expiry (each every ``SWEEP_INTERVAL`` s), paused again when it stops being active;
it closes all of it on shutdown. One RPC transport
(``shared.rpc``; ``app.state.chunks`` is its chunk-server client) serves the health checks and fsck. The schema must already be at Alembic ``head``
(``leader.migrations.run_migrations``, called by ``python -m leader``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from datetime import datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from fastapi import FastAPI
from shared.http import JSONResponse

from leader import servers_store
from leader.access_keys import AccessKeys
from leader.db import is_sqlite
from leader.election import Election
from leader.membership import Membership
from leader.routes import files, folders, fsck, gc, health, keys, multipart, properties, servers, trash, txns
from leader.store import Store
from leader.sweeper import expire_uploads_once, purge_trash_once, sweep_once
from shared.bodies import BodyLimitMiddleware
from shared.config import LeaderSettings
from shared.errors import install_error_handlers
from shared.metrics import install_metrics
from leader.metrics import refresh_from
from shared.auth.middleware import ClusterAuthMiddleware, send_json_error
from shared.errors import ACTIVE_LEADER_HEADER, RingFSError
from shared.auth.sealing import Sealer
from shared.auth.service_auth import ClusterAuth, client_ssl_context
from shared.protocol.rules import RING_EPOCH_HEADER
from shared.rpc.chunk_client import ChunkClient
from shared.rpc.transport import Transport
from leader.read_leases import ReadLeases

log = logging.getLogger("ringfs.leader")

# Seconds one fsck presence request to a chunk server may take (leader/fsck.py); health checks and the
# other calls give their own timeout.
PEER_TIMEOUT = 30.0
FIRST_TRY_TIMEOUT = 15.0  # seconds start-up waits for the election's first try (leader/election.py)


class EpochHeaderMiddleware:
    """Pure ASGI middleware adding ``X-Ring-Epoch`` to every response, so user apps notice a stale
    cached ring from any leader reply (cheaper than ``BaseHTTPMiddleware``)."""

    def __init__(self, app, membership_of) -> None:
        self.app = app
        self.membership_of = membership_of

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_epoch(message):
            if message["type"] == "http.response.start":
                membership = self.membership_of()
                if membership is not None:
                    headers = list(message.get("headers", []))
                    headers.append((RING_EPOCH_HEADER.lower().encode(), str(membership.epoch).encode()))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_epoch)


class StandbyMiddleware:
    """Pure ASGI: while this leader is not active (a standby, or its lease expired: leader/election.py),
    every request but ``/healthz`` and ``/metrics`` gets ``503`` naming the active leader in
    ``X-RingFS-Active-Leader`` (empty when not known), which clients follow."""

    OPEN = frozenset({"/healthz", "/metrics"})

    def __init__(self, app, election_of) -> None:
        self.app = app
        self.election_of = election_of

    async def __call__(self, scope, receive, send):
        election = self.election_of()
        if scope["type"] != "http" or election is None or election.is_active() or scope["path"] in self.OPEN:
            return await self.app(scope, receive, send)
        active = election.active_url if election.active_url != election.advertise_url else None
        where = f"the active leader is {active}" if active else "no active leader is known yet"
        await send_json_error(send, 503, f"this leader ({election.advertise_url}) is a standby: {where}",
                              [(ACTIVE_LEADER_HEADER.lower().encode(), (active or "").encode())])


def create_app(settings: LeaderSettings, auth: ClusterAuth | None = None, sqlite_lock=None) -> FastAPI:
    """The leader app for ``settings``. Raises :class:`SecretError` without a cluster secret (unless
    ``INSECURE_NO_AUTH``). On SQLite it is the only leader (a second one on the same database refuses to
    start: :class:`LeaderLockError`); on PostgreSQL it takes part in the election (``leader/election.py``)
    and serves only while active. ``sqlite_lock``: the lock :func:`hold_sqlite_leader_lock` gave, when the
    caller took it already (``python -m leader`` does, to refuse before it migrates anything)."""
    auth = auth or ClusterAuth.from_settings(settings, "leader")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        insecure_warning = asyncio.create_task(auth.warn_while_insecure())
        lock = sqlite_lock
        if lock is None and is_sqlite(settings.database_url):
            lock = hold_sqlite_leader_lock(settings.database_url)
        store = Store(settings.database_url)
        transport = Transport(PEER_TIMEOUT, auth.signer, client_ssl_context(settings))
        chunks = ChunkClient(transport)
        sealer = Sealer(auth.secret) if auth.secret is not None else None
        access_keys = AccessKeys(store, sealer) if sealer is not None else None
        membership = Membership(settings, store, chunks, sealer)
        store.leases = ReadLeases(settings.lease_seconds, transport, is_busy=store.cache.is_busy,
                                  load_horizon=store.lease_horizon, save_horizon=store.save_lease_horizon)
        app.state.store, app.state.chunks = store, chunks
        app.state.access_keys = access_keys
        scheduler = AsyncIOScheduler()
        add_background_jobs(scheduler, settings, store, membership)

        async def on_active(term: int | None) -> None:
            """Serve from what SQL says now: the ring, the health-check state, no cached manifest."""
            store.cache.clear()
            try:  # leases a previous leader granted may still run: mutations wait them out
                await store.leases.load()
            except RingFSError as exc:
                log.warning("lease horizon unreadable (%s): mutations wait out the longest lease", exc.message)
            if access_keys is not None:
                await _bootstrap_keys(access_keys, settings, auth)
            await membership.load()
            if term is not None:  # a takeover: no server is removed before it had every chance to answer
                membership.hold_removals(settings.removal_threshold * settings.health_check_interval)
            app.state.membership = membership
            if scheduler.running:
                scheduler.resume()
            else:
                scheduler.start()

        async def on_standby() -> None:
            if scheduler.running:
                scheduler.pause()

        election_task = None
        if lock is not None:
            await on_active(None)
        else:
            election = Election(settings.database_url, settings.advertise_url, store, on_active, on_standby)
            app.state.election = election
            election_task = asyncio.create_task(election.run())
            # serve only once the first try has an outcome: a leader that can be active is, from its first
            # request on (a standby, or one whose database is down, serves 503s until that changes)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(election.first_try.wait(), FIRST_TRY_TIMEOUT)
        role = "the only leader" if lock is not None else (
            "active" if app.state.election.is_active() else "standby until it holds the election lock")
        log.info("leader ready: %s, database %s", role, settings.database_url.split("://")[0])
        try:
            yield
        finally:
            insecure_warning.cancel()
            if election_task is not None:
                election_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await election_task
            if scheduler.running:
                scheduler.shutdown(wait=False)
            await transport.aclose()
            await store.dispose()
            if lock is not None:
                lock.close()

    app = FastAPI(title="RingFS leader", lifespan=lifespan, default_response_class=JSONResponse)
    app.state.settings = settings
    app.state.body_idle_timeout = settings.body_idle_timeout
    app.state.membership = None
    app.state.election = None
    app.add_middleware(EpochHeaderMiddleware, membership_of=lambda: app.state.membership)
    app.add_middleware(StandbyMiddleware, election_of=lambda: app.state.election)
    app.add_middleware(ClusterAuthMiddleware, auth=auth)
    app.add_middleware(BodyLimitMiddleware,
                       limits=txns.BODY_LIMITS + files.BODY_LIMITS + gc.BODY_LIMITS + multipart.BODY_LIMITS)
    install_error_handlers(app)
    install_metrics(app, "leader", refresh_from(app))
    for module in (health, servers, txns, files, folders, trash, gc, fsck, keys, multipart, properties):
        app.include_router(module.router)
    for module in (txns, files):
        module.fast.install(app)
    return app


def add_background_jobs(scheduler: AsyncIOScheduler, settings: LeaderSettings, store: Store,
                        membership: Membership) -> None:
    """The active leader's jobs: health checks, the pending sweeper, the trash purge, multipart expiry."""
    soon = datetime.now() + timedelta(seconds=min(settings.health_check_interval, 1.0))
    scheduler.add_job(membership.run_health_checks, "interval", seconds=settings.health_check_interval,
                      max_instances=1, coalesce=True, next_run_time=soon, id="health_checks")
    scheduler.add_job(sweep_once, "interval", args=[store, settings.pending_ttl],
                      seconds=settings.sweep_interval, max_instances=1, coalesce=True, id="pending_sweeper")
    scheduler.add_job(purge_trash_once, "interval", args=[store, settings.trash_retention],
                      seconds=settings.sweep_interval, max_instances=1, coalesce=True, id="trash_purge")
    scheduler.add_job(expire_uploads_once, "interval", args=[store, settings.multipart_ttl],
                      seconds=settings.sweep_interval, max_instances=1, coalesce=True, id="multipart_expiry")


class LeaderLockError(RuntimeError):
    """A second leader on one SQLite database."""


def hold_sqlite_leader_lock(database_url: str):
    """An exclusive ``flock`` on ``<database>.leader-lock``, held while the leader runs (the open file;
    close it to release). SQLite has one leader: raises :class:`LeaderLockError` when another holds it."""
    path = database_url.split(":///", 1)[-1]
    if not path or path == ":memory:":
        return open(os.devnull)
    handle = open(path + ".leader-lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise LeaderLockError(f"another leader is running on the SQLite database {path}: SQLite has one "
                              "leader; for standby leaders use PostgreSQL (README \"Standby leaders\")") from None
    return handle


async def _bootstrap_keys(access_keys: AccessKeys, settings: LeaderSettings, auth: ClusterAuth) -> None:
    """The root key from ``ROOT_ACCESS_KEY`` / ``ROOT_SECRET_KEY``; after a cluster-secret rotation
    (``CLUSTER_SECRET_PREVIOUS`` set), every stored secret sealed again under the new secret."""
    if auth.secret is not None and auth.secret.previous is not None:
        async with access_keys.store.write() as session:
            servers = await servers_store.reseal_server_keys(session, access_keys.sealer.reseal)
        log.info("cluster secret rotation: %d access keys and %d server keys sealed under the new secret",
                 await access_keys.reseal(), servers)
    if settings.root_access_key and settings.root_secret_key:
        await access_keys.ensure_root(settings.root_access_key, settings.root_secret_key.get_secret_value())
