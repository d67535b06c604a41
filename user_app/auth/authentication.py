"""Who is calling the user API: HTTP Basic with an access key (the id as user name, the secret key as
password), checked on every request before it reaches a route (README "Security").

* ``/`` and ``/web/`` are the web page's: its session cookie authenticates there, not Basic
  (``user_app/web/authentication.py``).
* ``GET /healthz`` is open; ``GET /metrics`` takes ``Bearer <METRICS_TOKEN>`` (or the cluster credential);
  ``/internal/...`` (the leader's lease revocations) takes the cluster credential only.
* No credential: ``401`` with ``WWW-Authenticate: Basic realm="RingFS"``. A wrong key or secret: ``401``.
  The leader unreachable: ``503``. Secrets are compared in constant time and never logged.
* The request then carries its :class:`Principal` in ``request.state.principal``; routes check what it
  may do (403).

With ``INSECURE_NO_AUTH`` every request is an anonymous admin with every grant.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Callable

from shared.auth.middleware import CLUSTER_HEADER, header, request_target, send_json_error
from shared.auth.service_auth import ClusterAuth
from shared.errors import RingFSError, Unauthorized
from user_app.auth.key_cache import KeyCache
from user_app.auth.principal import Principal
from user_app.web.authentication import WebAuthenticator, is_web_path

REALM = "RingFS"
CHALLENGE = (b"www-authenticate", f'Basic realm="{REALM}", charset="UTF-8"'.encode())
OPEN_PATHS = frozenset({"/healthz"})
INTERNAL_PREFIX = "/internal/"  # peers' calls (user_app/lease_routes.py): the cluster credential, no user key
ANONYMOUS_ADMIN = Principal(access_key="anonymous", name="anonymous (INSECURE_NO_AUTH)", admin=True,
                            read_prefixes=("",), write_prefixes=("",))


def parse_basic(authorization: str | None) -> tuple[str, str]:
    """``(access key, secret key)`` of a Basic credential. Raises :class:`Unauthorized`."""
    if not authorization:
        raise Unauthorized("this request needs a credential: HTTP Basic with an access key and its secret key")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic":
        raise Unauthorized("the user API takes HTTP Basic credentials (access key : secret key)")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthorized("malformed Basic credential") from None
    access_key, colon, secret = decoded.partition(":")
    if not colon:
        raise Unauthorized("malformed Basic credential")
    return access_key, secret


async def authenticate(keys: KeyCache, access_key: str, secret: str) -> Principal:
    """The principal of a key whose secret is ``secret``. Raises :class:`Unauthorized` (unknown key or
    wrong secret, the same message for both) or :class:`Unavailable`."""
    key = await keys.lookup(access_key)
    expected = key.secret_key.encode() if key is not None else b"\0" * 40
    if not hmac.compare_digest(expected, secret.encode()) or key is None:
        raise Unauthorized("unknown access key or wrong secret key")
    return Principal.of(key)


class UserAuthMiddleware:
    """Pure ASGI: authenticates every user-API request (see the module docstring)."""

    def __init__(self, app, cluster_auth: ClusterAuth, keys_of: Callable[[], KeyCache],
                 web: WebAuthenticator | None = None) -> None:
        self.app = app
        self.cluster_auth = cluster_auth
        self.keys_of = keys_of
        self.web = web  # the web page's session cookies (user_app/web/authentication.py)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        if self.web is not None and is_web_path(scope["path"]):
            return await self.web(self.app, scope, receive, send)
        authorization = header(scope, b"authorization")
        try:
            if scope["path"] == "/metrics":
                self.cluster_auth.check_metrics(authorization, header(scope, CLUSTER_HEADER), scope["method"],
                                                request_target(scope))
            elif scope["path"].startswith(INTERNAL_PREFIX):  # the leader's lease revocations: cluster only
                self.cluster_auth.check_internal(header(scope, CLUSTER_HEADER), scope["method"],
                                                 request_target(scope))
            elif self.cluster_auth.insecure:
                scope.setdefault("state", {})["principal"] = ANONYMOUS_ADMIN
            else:
                access_key, secret = parse_basic(authorization)
                principal = await authenticate(self.keys_of(), access_key, secret)
                scope.setdefault("state", {})["principal"] = principal
        except Unauthorized as exc:
            return await send_json_error(send, 401, exc.message, [CHALLENGE])
        except RingFSError as exc:
            return await send_json_error(send, exc.status, exc.message)
        return await self.app(scope, receive, send)
