"""``create_app(settings)``: the chunk server's FastAPI application and the lifecycle of its parts.

On start: open the chunk store, start the scheduler (pending sweeper, GC, compaction; the registration watchdog joins
once the leader tells us its health-check interval), register with the leader in the background, so
``/healthz`` answers at once, and start the long-running tasks: ring refresh, anti-entropy, scrub. On
shutdown everything closes in reverse order.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from fastapi import FastAPI

from chunk_server.anti_entropy import AntiEntropy
from chunk_server.gc import GarbageCollector, schedule_gc
from chunk_server.handoff import Handoff
from chunk_server.metrics import refresh_from
from chunk_server.registration import Registration
from chunk_server.routes import BODY_LIMITS, fast, router
from chunk_server.scrub import Scrubber
from chunk_server.compaction import Compactor, schedule_compaction
from chunk_server.store import ChunkStore
from chunk_server.sweeper import schedule_sweeper
from shared.auth.middleware import ClusterAuthMiddleware
from shared.auth.service_auth import ClusterAuth, client_ssl_context
from shared.bodies import BodyLimitMiddleware
from shared.config import ChunkServerSettings
from shared.errors import install_error_handlers
from shared.metrics import install_metrics
from shared.rpc.chunk_client import ChunkClient
from shared.rpc.leader_client import LeaderClient
from shared.rpc.ring_cache import RingCache
from shared.rpc.transport import Transport


def create_app(settings: ChunkServerSettings, auth: ClusterAuth | None = None) -> FastAPI:
    """The chunk server app for ``settings``. Raises :class:`SecretError` without a cluster secret
    (unless ``INSECURE_NO_AUTH``)."""
    auth = auth or ClusterAuth.from_settings(settings, "chunk server")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = ChunkStore(settings.data_dir, fsync=settings.fsync, segment_bytes=settings.segment_bytes)
        transport = Transport(settings.peer_timeout, auth.signer, client_ssl_context(settings))
        chunks, leader = ChunkClient(transport), LeaderClient(transport, settings.leaders)
        scheduler = AsyncIOScheduler()
        registration = Registration(settings, scheduler, leader)
        me = registration.server_id
        app.state.settings, app.state.store, app.state.registration = settings, store, registration
        schedule_sweeper(scheduler, store, settings.pending_ttl, settings.sweep_interval)
        rings = RingCache(leader, settings.ring_refresh)
        app.state.scrubber = Scrubber(store, rings, chunks, me, settings.scrub_bytes_per_sec, settings.scrub_interval)
        handoff = Handoff(store, chunks, settings.handoff_min_member_age, settings.handoff_drops_per_sec)
        app.state.anti_entropy = AntiEntropy(store, rings, chunks, me, handoff, settings.anti_entropy_batch,
                                             settings.anti_entropy_bytes_per_sec, settings.anti_entropy_interval,
                                             settings.anti_entropy_chunks_per_sec)
        schedule_gc(scheduler, GarbageCollector(store, leader, settings.gc_grace), settings.gc_interval)
        compactor = Compactor(store, settings.compaction_live_ratio, settings.compaction_bytes_per_sec)
        schedule_compaction(scheduler, compactor, settings.compaction_interval)
        scheduler.start()
        registration.start()
        tasks = [asyncio.create_task(coro, name=name) for name, coro in (
            ("ring-refresh", rings.run()), ("anti-entropy", app.state.anti_entropy.run()),
            ("scrub", app.state.scrubber.run()), ("insecure-warning", auth.warn_while_insecure()))]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await registration.close()
            scheduler.shutdown(wait=False)
            await transport.aclose()
            store.close()

    app = FastAPI(title="RingFS chunk server", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.body_idle_timeout = settings.body_idle_timeout
    app.state.auth = auth
    app.add_middleware(ClusterAuthMiddleware, auth=auth)
    app.add_middleware(BodyLimitMiddleware, limits=BODY_LIMITS)
    install_error_handlers(app)
    install_metrics(app, "chunk_server", refresh_from(app))
    app.include_router(router)
    fast.install(app)
    return app
