"""Jinja2 for the web page: the template folder, the filters the pages share, and :func:`render`."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import quote, urlencode

from fastapi import Request
from fastapi.templating import Jinja2Templates

from user_app.auth.principal import Principal

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")  # autoescapes .html


def human_size(n: int | None) -> str:
    """``1536`` -> ``1.5 KiB``; ``None`` -> an empty string."""
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def when(ts: float | None) -> str:
    """UNIX seconds as ``2026-12-04 09:30`` (UTC), or an empty string."""
    return "" if not ts else time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts))


def ago(ts: float | None) -> str:
    """UNIX seconds as ``12 s ago`` / ``3 min ago``, or ``never``."""
    if not ts:
        return "never"
    seconds = max(0, time.time() - ts)
    if seconds < 120:
        return f"{int(seconds)} s ago"
    if seconds < 7200:
        return f"{int(seconds // 60)} min ago"
    return when(ts)


def url_path(path: str) -> str:
    """A RingFS path quoted for a URL path (``/`` kept)."""
    return quote(path, safe="/")


env = TEMPLATES.env
env.filters.update(size=human_size, when=when, ago=ago, urlpath=url_path, query=urlencode)


def render(request: Request, template: str, status: int = 200, headers: dict | None = None, **context):
    """The page ``template`` with the session's principal (``principal``, or None on the login page) and CSRF
    token (``csrf``) available to it; pages are never cached (they show one key's view)."""
    principal: Principal | None = getattr(request.state, "principal", None)
    session = getattr(request.state, "web_session", None)
    csrf = request.app.state.web_signer.csrf_token(session.session_id) if session is not None else ""
    response = TEMPLATES.TemplateResponse(request, template, {"principal": principal, "csrf": csrf, **context},
                                          status_code=status, headers=headers)
    response.headers.update(PAGE_HEADERS)
    return response


# Nothing on a page comes from elsewhere or runs inline; no other site may frame it.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                               "form-action 'self'; frame-ancestors 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
