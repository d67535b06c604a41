"""The leader's FastAPI application: store, membership, background jobs and routers.

``create_app(settings)`` builds it; the lifespan opens the metadata store, loads the cached ring, starts
APScheduler's health-check job (every ``HEALTH_CHECK_INTERVAL`` s), pending sweeper, trash purge and
multipart expiry (each every ``SWEEP_INTERVAL`` s), and closes all of it on shutdown. One RPC transport
(``shared.rpc``; ``app.state.chunks`` is its chunk-server client) serves the health checks and fsck. The schema must already be at Alembic ``head``
(``leader.migrations.run_migrations``, called by ``python -m leader``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from fastapi import FastAPI
from shared.http import JSONResponse

from leader import servers_store
from leader.access_keys import AccessKeys
from leader.membership import Membership
from leader.routes import files, folders, fsck, gc, health, keys, multipart, properties, servers, trash, txns
from leader.store import Store
from leader.sweeper import expire_uploads_once, purge_trash_once, sweep_once
from shared.bodies import BodyLimitMiddleware
from shared.config import LeaderSettings
from shared.errors import install_error_handlers
from shared.metrics import install_metrics
from leader.metrics import refresh_from
from shared.auth.middleware import ClusterAuthMiddleware
from shared.auth.sealing import Sealer
from shared.auth.service_auth import ClusterAuth, client_ssl_context
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


def create_app(settings: LeaderSettings, auth: ClusterAuth | None = None) -> FastAPI:
    """The leader app for ``settings``. Raises :class:`SecretError` without a cluster secret (unless
    ``INSECURE_NO_AUTH``)."""
    auth = auth or ClusterAuth.from_settings(settings, "leader")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        insecure_warning = asyncio.create_task(auth.warn_while_insecure())
        store = Store(settings.database_url)
        transport = Transport(PEER_TIMEOUT, auth.signer, client_ssl_context(settings))
        chunks = ChunkClient(transport)
        sealer = Sealer(auth.secret) if auth.secret is not None else None
        access_keys = AccessKeys(store, sealer) if sealer is not None else None
        if access_keys is not None:
            await _bootstrap_keys(access_keys, settings, auth)
        membership = Membership(settings, store, chunks, sealer)
        await membership.load()
        app.state.store, app.state.membership, app.state.chunks = store, membership, chunks
        app.state.access_keys = access_keys
        scheduler = AsyncIOScheduler()
        soon = datetime.now() + timedelta(seconds=min(settings.health_check_interval, 1.0))
        scheduler.add_job(membership.run_health_checks, "interval", seconds=settings.health_check_interval,
                          max_instances=1, coalesce=True, next_run_time=soon, id="health_checks")
        scheduler.add_job(sweep_once, "interval", args=[store, settings.pending_ttl],
                          seconds=settings.sweep_interval, max_instances=1, coalesce=True, id="pending_sweeper")
        scheduler.add_job(purge_trash_once, "interval", args=[store, settings.trash_retention],
                          seconds=settings.sweep_interval, max_instances=1, coalesce=True, id="trash_purge")
        scheduler.add_job(expire_uploads_once, "interval", args=[store, settings.multipart_ttl],
                          seconds=settings.sweep_interval, max_instances=1, coalesce=True, id="multipart_expiry")
        scheduler.start()
        log.info("leader ready: epoch %d, database %s", membership.epoch, settings.database_url.split("://")[0])
        try:
            yield
        finally:
            insecure_warning.cancel()
            scheduler.shutdown(wait=False)
            await transport.aclose()
            await store.dispose()

    app = FastAPI(title="RingFS leader", lifespan=lifespan, default_response_class=JSONResponse)
    app.state.settings = settings
    app.state.body_idle_timeout = settings.body_idle_timeout
    app.state.membership = None
    app.add_middleware(EpochHeaderMiddleware, membership_of=lambda: app.state.membership)
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
