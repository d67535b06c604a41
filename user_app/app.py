"""The user app's FastAPI application and the services its requests share."""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI
from shared.http import JSONResponse

from shared.config import UserAppSettings
from shared.errors import install_error_handlers
from shared.metrics import install_metrics
from user_app.chunk_cache import ChunkCache
from user_app.peers import PeerClient
from user_app.placement import RingCache
from user_app.reader import ChunkReader
from user_app.routes import router
from user_app.writer import WriteCoordinator


@dataclass
class Services:
    """Per-process singletons: one connection pool, one ring cache, one writer and one reader."""

    peers: PeerClient
    rings: RingCache
    writer: WriteCoordinator
    reader: ChunkReader

    @classmethod
    def create(cls, settings: UserAppSettings) -> "Services":
        peers = PeerClient(settings.leader_url, settings.request_timeout)
        rings = RingCache(peers, settings.ring_ttl)
        return cls(
            peers=peers,
            rings=rings,
            writer=WriteCoordinator(peers, rings, settings.piece_size, settings.pieces_in_flight,
                                    settings.crash_after_phase),
            reader=ChunkReader(peers, rings, settings.piece_size, settings.pieces_in_flight,
                               ChunkCache(settings.chunk_cache_bytes), settings.chunk_cache_max_file),
        )


def create_app(settings: UserAppSettings | None = None) -> FastAPI:
    """Build the user web API. Reads :class:`UserAppSettings` from the environment when not given."""
    settings = settings or UserAppSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.services = Services.create(settings)
        try:
            yield
        finally:
            await app.state.services.peers.aclose()

    app = FastAPI(title="RingFS user API", lifespan=lifespan, default_response_class=JSONResponse)
    install_error_handlers(app)
    install_metrics(app, "user_app")
    app.include_router(router)
    return app
