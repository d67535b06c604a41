"""The web page's form posts: bounded URL-encoded bodies, and the CSRF check every unsafe request passes.

Every ``POST``/``PUT``/``DELETE`` under ``/web/`` must carry the session's CSRF token
(``user_app/web/sessions.py``) in the ``csrf`` form field or the ``X-CSRF-Token`` header, and, when the
browser sends an ``Origin``, come from this same origin; otherwise it is refused with 403 before the
route runs. The login form is checked against its pre-session cookie instead.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import Request

from shared.bodies import read_body
from shared.errors import BadRequest, Forbidden
from user_app.web.authentication import cookie
from user_app.web.sessions import CSRF_FIELD, CSRF_HEADER, LOGIN_COOKIE, SessionSigner

MAX_FORM_BYTES = 64 * 1024
MAX_FIELDS = 64
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
LOGIN_PATH = "/web/login"


async def form(request: Request) -> dict[str, str]:
    """The request's URL-encoded form, parsed once: the first value of each field. Raises
    :class:`PayloadTooLarge` over ``MAX_FORM_BYTES`` (``shared.bodies.read_body``), :class:`BadRequest` for
    another content type or a body that is not UTF-8."""
    cached = getattr(request.state, "form", None)
    if cached is not None:
        return cached
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise BadRequest("this form takes application/x-www-form-urlencoded bodies")
    body = await read_body(request, MAX_FORM_BYTES)
    try:
        text = body.decode("utf-8")
        fields = parse_qs(text, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"malformed form body: {exc}") from None
    request.state.form = {k: v[0] for k, v in fields.items()}
    return request.state.form


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None:  # not sent by every client; the CSRF token still has to match
        return True
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


async def csrf_protect(request: Request) -> None:
    """A dependency of every web route: 403 for an unsafe request without this session's CSRF token or
    from another origin. Raises :class:`Forbidden`."""
    if request.method in SAFE_METHODS:
        return
    if not _same_origin(request):
        raise Forbidden("cross-origin request refused")
    signer: SessionSigner = request.app.state.web_signer
    token = request.headers.get(CSRF_HEADER)
    if token is None and request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        token = (await form(request)).get(CSRF_FIELD)
    if request.url.path == LOGIN_PATH:
        nonce = signer.open_login_nonce(cookie(request.scope, LOGIN_COOKIE))
        if nonce is None or not signer.check_csrf(nonce, token):
            raise Forbidden("this login form has expired: reload the page and log in again")
        return
    session = getattr(request.state, "web_session", None)
    if session is None or not signer.check_csrf(session.session_id, token):
        raise Forbidden("missing or wrong CSRF token: reload the page and try again")
