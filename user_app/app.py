"""The user app's FastAPI application and the services its requests share."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from shared.config import UserAppSettings
from shared.errors import install_error_handlers
from shared.http import JSONResponse
from shared.metrics import install_metrics
from user_app.routes import router
from user_app.services import Services


def create_app(settings: UserAppSettings | None = None) -> FastAPI:
    """Build the user web API. Reads :class:`UserAppSettings` from the environment when not given."""
    settings = settings or UserAppSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.services = Services.create(settings)
        try:
            yield
        finally:
            await app.state.services.aclose()

    app = FastAPI(title="RingFS user API", lifespan=lifespan, default_response_class=JSONResponse)
    install_error_handlers(app)
    install_metrics(app, "user_app")
    app.include_router(router)
    return app
