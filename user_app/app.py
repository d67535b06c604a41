"""The user app's FastAPI application and the services its requests share."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from shared.auth.service_auth import ClusterAuth
from shared.bodies import BodyLimitMiddleware
from shared.config import UserAppSettings
from shared.errors import install_error_handlers
from shared.http import JSONResponse
from shared.metrics import install_metrics
from user_app.admin_routes import router as admin_router
from user_app.auth.authentication import ANONYMOUS_ADMIN, UserAuthMiddleware
from user_app.dav.app import MOUNT as DAV_MOUNT
from user_app.dav.app import DavApp
from user_app.lease_routes import router as lease_router
from user_app.routes import BODY_LIMITS, fast, router
from user_app.s3.app import S3App
from user_app.services import Services
from user_app.web.app import install_web, web_error_page
from user_app.web.authentication import WebAuthenticator


def create_app(settings: UserAppSettings | None = None, auth: ClusterAuth | None = None) -> FastAPI:
    """Build the user web API. Reads :class:`UserAppSettings` from the environment when not given.
    Raises :class:`SecretError` without a cluster secret (unless ``INSECURE_NO_AUTH``)."""
    settings = settings or UserAppSettings()
    auth = auth or ClusterAuth.from_settings(settings, "user app")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.services = Services.create(settings, auth)
        insecure_warning = asyncio.create_task(auth.warn_while_insecure())
        try:
            yield
        finally:
            insecure_warning.cancel()
            await app.state.services.aclose()

    # /docs and /redoc with Swagger UI and ReDoc served from the package (fastapi-offline), not a CDN: they
    # work on a network without internet access
    app = FastAPIOffline(title="RingFS user API", lifespan=lifespan, default_response_class=JSONResponse)
    app.state.body_idle_timeout = settings.body_idle_timeout
    signer = install_web(app, settings, auth)
    keys_of = lambda: app.state.services.keys  # noqa: E731
    web = WebAuthenticator(signer, keys_of, anonymous=ANONYMOUS_ADMIN if auth.insecure else None)
    app.add_middleware(UserAuthMiddleware, cluster_auth=auth, keys_of=keys_of, web=web)
    app.add_middleware(BodyLimitMiddleware, limits=BODY_LIMITS)
    install_error_handlers(app, web_error_page)
    install_metrics(app, "user_app")
    app.include_router(router)
    app.include_router(admin_router)
    app.include_router(lease_router)
    fast.install(app)
    app.mount(DAV_MOUNT, DavApp(lambda: app.state.services))
    return app


class PortRouter:
    """Pure ASGI: requests that arrived on ``port`` go to ``other``, everything else (lifespan included)
    to ``app``. One process serves the user API and the S3 API on their own ports this way
    (``shared/serve.py``), sharing the services the user API's lifespan makes."""

    def __init__(self, app, port: int, other) -> None:
        self.app = app
        self.port = port
        self.other = other

    async def __call__(self, scope, receive, send):
        server = scope.get("server")
        if scope["type"] == "http" and server is not None and server[1] == self.port:
            return await self.other(scope, receive, send)
        return await self.app(scope, receive, send)


def create_server_app(settings: UserAppSettings | None = None, auth: ClusterAuth | None = None):
    """What ``python -m user_app`` serves: the user API, and the S3 API on ``S3_PORT`` unless it is 0."""
    settings = settings or UserAppSettings()
    auth = auth or ClusterAuth.from_settings(settings, "user app")
    app = create_app(settings, auth)
    if not settings.s3_port:
        return app
    return PortRouter(app, settings.s3_port, S3App(settings, auth, lambda: app.state.services))
