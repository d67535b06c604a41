"""The leader's FastAPI application: store, membership, background jobs and routers.

``create_app(settings)`` builds it; the lifespan opens the metadata store, loads the cached ring, starts
APScheduler's health-check job (every ``HEALTH_CHECK_INTERVAL`` s), pending sweeper and trash purge
(both every ``SWEEP_INTERVAL`` s), and closes all of it on shutdown. One RPC transport
(``shared.rpc``; ``app.state.chunks`` is its chunk-server client) serves the health checks and fsck. The schema must already be at Alembic ``head``
(``leader.migrations.run_migrations``, called by ``python -m leader``).
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from fastapi import FastAPI
from shared.http import JSONResponse

from leader.membership import Membership
from leader.routes import files, fsck, gc, health, servers, trash, txns
from leader.store import Store
from leader.sweeper import purge_trash_once, sweep_once
from shared.config import LeaderSettings
from shared.errors import install_error_handlers
from shared.metrics import install_metrics
from leader.metrics import refresh_from
from shared.protocol.rules import RING_EPOCH_HEADER
from shared.rpc.chunk_client import ChunkClient
from shared.rpc.transport import Transport

log = logging.getLogger("ringfs.leader")

# Seconds one fsck presence request to a chunk server may take (leader/fsck.py); health checks and the
# other calls give their own timeout.
PEER_TIMEOUT = 30.0


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


def create_app(settings: LeaderSettings) -> FastAPI:
    """The leader app for ``settings``."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        store = Store(settings.database_url)
        transport = Transport(PEER_TIMEOUT)
        chunks = ChunkClient(transport)
        membership = Membership(settings, store, chunks)
        await membership.load()
        app.state.store, app.state.membership, app.state.chunks = store, membership, chunks
        scheduler = AsyncIOScheduler()
        soon = datetime.now() + timedelta(seconds=min(settings.health_check_interval, 1.0))
        scheduler.add_job(membership.run_health_checks, "interval", seconds=settings.health_check_interval,
                          max_instances=1, coalesce=True, next_run_time=soon, id="health_checks")
        scheduler.add_job(sweep_once, "interval", args=[store, settings.pending_ttl],
                          seconds=settings.sweep_interval, max_instances=1, coalesce=True, id="pending_sweeper")
        scheduler.add_job(purge_trash_once, "interval", args=[store, settings.trash_retention],
                          seconds=settings.sweep_interval, max_instances=1, coalesce=True, id="trash_purge")
        scheduler.start()
        log.info("leader ready: epoch %d, database %s", membership.epoch, settings.database_url.split("://")[0])
        try:
            yield
        finally:
            scheduler.shutdown(wait=False)
            await transport.aclose()
            await store.dispose()

    app = FastAPI(title="RingFS leader", lifespan=lifespan, default_response_class=JSONResponse)
    app.state.settings = settings
    app.state.membership = None
    app.add_middleware(EpochHeaderMiddleware, membership_of=lambda: app.state.membership)
    install_error_handlers(app)
    install_metrics(app, "leader", refresh_from(app))
    for module in (health, servers, txns, files, trash, gc, fsck):
        app.include_router(module.router)
    return app
