"""Puts the web page into the user app: its routers, its static files, its session signer and its
HTML error pages (``user_app/app.py`` calls :func:`install_web`)."""

from __future__ import annotations

from http import HTTPStatus
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles

from shared.auth.service_auth import ClusterAuth
from shared.config import UserAppSettings
from user_app.web import actions, admin, files, pages
from user_app.web.authentication import is_web_path
from user_app.web.sessions import SessionSigner
from user_app.web.templating import render

STATIC = Path(__file__).parent / "static"


def install_web(app: FastAPI, settings: UserAppSettings, auth: ClusterAuth) -> SessionSigner:
    """Add the page's routes to ``app``; the signer is the one its authentication middleware needs."""
    signer = SessionSigner(auth.secret, settings.web_session_seconds)
    app.state.web_signer = signer
    for router in (pages.root, pages.router, files.router, actions.router, admin.router):
        app.include_router(router)
    app.mount("/web/static", StaticFiles(directory=STATIC), name="web-static")
    return signer


def web_error_page(request: Request, status: int, message: str):
    """An HTML page for an error on the web page's own URLs when a browser navigated there (it accepts
    ``text/html``); None elsewhere, so the API's JSON errors stay as they are."""
    if not is_web_path(request.url.path) or "text/html" not in request.headers.get("accept", ""):
        return None
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    return render(request, "error.html", status=status, title=f"{status} {title}", message=message)
