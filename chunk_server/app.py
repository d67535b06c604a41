"""``create_app(settings)``: the chunk server's FastAPI application and the lifecycle of its parts.

On start: open the chunk store, start the scheduler (pending sweeper; the registration watchdog joins
once the leader tells us its health-check interval) and register with the leader in the background, so
``/healthz`` answers at once. On shutdown everything closes in reverse order.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from fastapi import FastAPI

from chunk_server.registration import Registration
from chunk_server.routes import router
from chunk_server.store import ChunkStore
from chunk_server.sweeper import schedule_sweeper
from shared.config import ChunkServerSettings
from shared.errors import install_error_handlers


def create_app(settings: ChunkServerSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = ChunkStore(settings.data_dir, fsync=settings.fsync)
        scheduler = AsyncIOScheduler()
        registration = Registration(settings, scheduler)
        app.state.settings, app.state.store, app.state.registration = settings, store, registration
        schedule_sweeper(scheduler, store, settings.pending_ttl, settings.sweep_interval)
        scheduler.start()
        registration.start()
        try:
            yield
        finally:
            await registration.close()
            scheduler.shutdown(wait=False)
            store.close()

    app = FastAPI(title="RingFS chunk server", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    install_error_handlers(app)
    app.include_router(router)
    return app
