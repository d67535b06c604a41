"""Web-page sessions: who a browser is, and the CSRF token its forms must carry (README "Web page").

A login (access key id + secret key, checked like HTTP Basic) sets the cookie ``ringfs_session``: an
itsdangerous ``URLSafeTimedSerializer`` token of ``{"k": access key, "f": fingerprint, "s": session id}``,
signed with a key derived from the cluster secret (HKDF purpose ``web-session``), so that every user app
of the cluster accepts it and nobody without the secret can forge one. The cookie is ``HttpOnly``,
``SameSite=Strict``, ``Secure`` over TLS, and expires after ``WEB_SESSION_SECONDS`` (the signature's age
is checked too, so an old cookie replayed by hand is refused).

* ``fingerprint`` is an HMAC of the key's secret: deleting the key, or giving it a new secret, ends its
  sessions at the next key-cache refresh (``KEY_CACHE_TTL``).
* The CSRF token is an HMAC of the session id (OWASP's "signed double submit" pattern): pages embed it;
  every unsafe request must send it back in the form field ``csrf`` or the ``X-CSRF-Token`` header.
  The login form has its own token, tied to a short-lived pre-session cookie.
* During a cluster-secret rotation a cookie signed with the previous secret still verifies.

With ``INSECURE_NO_AUTH`` there is no secret: the page is an anonymous admin, signed with a key made at
start-up (valid in this process only).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer

from shared.auth.cluster_secret import ClusterSecret, derive_key

PURPOSE = "web-session"
SESSION_COOKIE = "ringfs_session"
LOGIN_COOKIE = "ringfs_login"
LOGIN_COOKIE_SECONDS = 3600  # how long a login form stays usable
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"


@dataclass(frozen=True)
class Session:
    """A verified session cookie: its key and session id (the CSRF token is derived from the id)."""

    access_key: str
    fingerprint: str
    session_id: str


class SessionSigner:
    """Signs and verifies session and login cookies and derives CSRF tokens. ``lifetime``: seconds."""

    def __init__(self, secret: ClusterSecret | None, lifetime: float) -> None:
        raw = [secret.current] + ([secret.previous] if secret and secret.previous else []) if secret else []
        keys = [derive_key(s, PURPOSE) for s in raw] or [os.urandom(32)]
        self._key = keys[0]
        # itsdangerous signs with the last key and verifies with any of them (its key rotation)
        self._serializer = URLSafeTimedSerializer(list(reversed(keys)), salt="ringfs-session")
        self._login = URLSafeTimedSerializer(list(reversed(keys)), salt="ringfs-login")
        self.lifetime = lifetime

    @staticmethod
    def fingerprint(secret_key: str) -> str:
        """32 hex characters that change when the key's secret does: an HMAC keyed with the secret, so the
        cookie (signed, not encrypted) shows nothing that helps to guess it."""
        return hmac.new(secret_key.encode(), b"ringfs-web-session-fingerprint", hashlib.sha256).hexdigest()[:32]

    def new_session(self, access_key: str, secret_key: str) -> str:
        """The cookie value of a new session for a key whose secret was just checked."""
        return self._serializer.dumps({"k": access_key, "f": self.fingerprint(secret_key),
                                       "s": secrets.token_urlsafe(16)})

    def open_session(self, cookie: str | None) -> Session | None:
        """The session of a cookie value, or None when it is missing, forged, malformed or expired."""
        if not cookie:
            return None
        try:
            data = self._serializer.loads(cookie, max_age=self.lifetime)
        except BadSignature:  # SignatureExpired is one
            return None
        if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("k", "f", "s")):
            return None
        return Session(data["k"], data["f"], data["s"])

    def csrf_token(self, session_id: str) -> str:
        """The CSRF token of a session (or of a login form's nonce)."""
        return hmac.new(self._key, b"csrf\0" + session_id.encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, session_id: str, token: str | None) -> bool:
        """Whether ``token`` is the session's CSRF token, compared in constant time."""
        return token is not None and hmac.compare_digest(self.csrf_token(session_id).encode(), token.encode())

    def new_login_nonce(self) -> tuple[str, str]:
        """``(cookie value, nonce)`` for a login form: the form carries ``csrf_token(nonce)``."""
        nonce = secrets.token_urlsafe(16)
        return self._login.dumps(nonce), nonce

    def open_login_nonce(self, cookie: str | None) -> str | None:
        if not cookie:
            return None
        try:
            nonce = self._login.loads(cookie, max_age=LOGIN_COOKIE_SECONDS)
        except BadSignature:
            return None
        return nonce if isinstance(nonce, str) else None
