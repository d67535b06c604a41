"""Who is using the web page: the session cookie of ``user_app/web/sessions.py`` instead of HTTP Basic.

``/`` and everything under ``/web/`` is the page's. Only the cookie authenticates there, never an
``Authorization`` header: a browser re-sends Basic credentials to any site that triggers a request, a
``SameSite=Strict`` cookie it does not, and every unsafe request must also carry the CSRF token
(``user_app/web/csrf.py``). ``/web/login`` and ``/web/static/`` are open.

Without a valid session a page (``GET``/``HEAD``) answers ``303`` to the login form, which comes back to
it, and so does a form a browser submitted (it accepts ``text/html``); anything else (the uploads'
requests) answers ``401`` with a JSON error (no Basic challenge, so no browser dialog).
"""

from __future__ import annotations

import hmac
from typing import Callable
from urllib.parse import quote

from starlette.requests import cookie_parser

from shared.auth.middleware import header, send_json_error
from shared.errors import RingFSError
from user_app.auth.key_cache import KeyCache
from user_app.auth.principal import Principal
from user_app.web.sessions import SESSION_COOKIE, Session, SessionSigner

PREFIX = "/web/"
OPEN_PREFIXES = ("/web/login", "/web/static/")
ANONYMOUS_SESSION = Session("anonymous", "", "anonymous")


def is_web_path(path: str) -> bool:
    """Whether ``path`` belongs to the web page (authenticated by its session cookie)."""
    return path == "/" or path == "/web" or path.startswith(PREFIX)


def cookie(scope, name: str) -> str | None:
    """The value of cookie ``name`` in the request's ``Cookie`` header (Starlette's parser), or None."""
    return cookie_parser(header(scope, b"cookie") or "").get(name)


class WebAuthenticator:
    """Resolves a request's session cookie to a principal and puts both in ``scope["state"]``
    (``principal``, ``web_session``); with ``anonymous`` (``INSECURE_NO_AUTH``) everyone is it."""

    def __init__(self, signer: SessionSigner, keys_of: Callable[[], KeyCache],
                 anonymous: Principal | None = None) -> None:
        self.signer = signer
        self.keys_of = keys_of
        self.anonymous = anonymous

    async def principal(self, scope) -> tuple[Principal, Session] | None:
        """The session's principal, or None without a valid session (missing, forged, expired cookie; key
        deleted or its secret changed). Raises :class:`Unavailable` when the leader cannot be asked."""
        if self.anonymous is not None:
            return self.anonymous, ANONYMOUS_SESSION
        session = self.signer.open_session(cookie(scope, SESSION_COOKIE))
        if session is None:
            return None
        key = await self.keys_of().lookup(session.access_key)
        if key is None or not _same(self.signer.fingerprint(key.secret_key), session.fingerprint):
            return None
        return Principal.of(key), session

    async def __call__(self, app, scope, receive, send):
        try:
            found = await self.principal(scope)
        except RingFSError as exc:  # the leader cannot be asked: 503
            return await send_json_error(send, exc.status, exc.message)
        state = scope.setdefault("state", {})
        if found is not None:
            state["principal"], state["web_session"] = found
        elif not scope["path"].startswith(OPEN_PREFIXES):
            if scope["method"] in ("GET", "HEAD"):
                return await _redirect_to_login(scope, send)
            if "text/html" in (header(scope, b"accept") or ""):  # a form a browser submitted
                return await _redirect_to_login({**scope, "path": "/web/browse/", "query_string": b""}, send)
            return await send_json_error(send, 401, "log in first: this session is missing or has expired")
        return await app(scope, receive, send)


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


async def _redirect_to_login(scope, send) -> None:
    target = scope["path"] + ("?" + scope["query_string"].decode("latin-1") if scope.get("query_string") else "")
    if target in ("/", "/web", "/web/"):
        target = "/web/browse/"
    location = "/web/login?next=" + quote(target, safe="")
    await send({"type": "http.response.start", "status": 303,
                "headers": [(b"location", location.encode("latin-1")), (b"content-length", b"0"),
                            (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": b""})
