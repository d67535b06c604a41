"""The cluster credential on internal requests: HMAC-SHA256 over the request line, a time stamp and a
nonce, with a key derived from the cluster secret (Garage signs its RPC with ``rpc_secret``; this is the
same idea as AWS SigV4's request signing, without the body).

Format (one header of its own, so that it never competes with a user's ``Authorization``; ASCII)::

    X-RingFS-Auth: RingFS-RPC key=<key id>, ts=<unix milliseconds>, nonce=<22 url-safe characters>,
                   sig=<64 hex>
    sig = HMAC-SHA256(rpc key, "RINGFS-RPC-V1\\n" METHOD "\\n" target "\\n" ts "\\n" nonce)

``target`` is the request's path and query exactly as sent (``/txns?txn_id=...``). The secret never
travels, only the MAC. A request is refused (401) when the key is not the cluster's, the MAC does not
match (compared in constant time), the time stamp is more than ``MAX_AGE`` seconds away from the
receiver's clock, or its nonce was already seen within that window (a captured request cannot be
replayed, not even at once). The MAC does not cover the body: on an untrusted network run TLS, which
protects the bytes in flight (README, "Security").
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict

from shared.auth.cluster_secret import SigningKey

SCHEME = "RingFS-RPC"
HEADER = "X-RingFS-Auth"
PURPOSE = "rpc"
# Seconds a signed request stays valid on either side of its time stamp: long enough for clock skew
# between hosts kept by NTP and for a request queued behind others, short enough that a captured one is
# useless within seconds. The replay cache remembers every nonce for twice this.
MAX_AGE = 10.0
# Nonces remembered at most; past this the oldest are forgotten even inside the window (a flood cannot
# grow the cache without end). At 10k requests/s a 20 s window holds 200k.
MAX_REMEMBERED_NONCES = 1_000_000


class AuthError(Exception):
    """An internal request's credential is missing or wrong; the message says which (never the secret)."""


def string_to_sign(method: str, target: str, ts: str, nonce: str) -> bytes:
    return f"RINGFS-RPC-V1\n{method.upper()}\n{target}\n{ts}\n{nonce}".encode()


def sign(key: SigningKey, method: str, target: str, now: float | None = None) -> str:
    """The ``X-RingFS-Auth`` header value for one internal request to ``target`` (path and query)."""
    ts = str(int((time.time() if now is None else now) * 1000))
    nonce = secrets.token_urlsafe(16)
    mac = hmac.digest(key.key, string_to_sign(method, target, ts, nonce), "sha256").hex()  # one-shot, in C
    return f"{SCHEME} key={key.key_id}, ts={ts}, nonce={nonce}, sig={mac}"


def parse(header: str) -> dict[str, str]:
    """The fields of a ``RingFS-RPC`` header. Raises :class:`AuthError` when it is not one."""
    scheme, _, rest = header.partition(" ")
    if scheme != SCHEME:
        raise AuthError(f"the {HEADER} header is not a {SCHEME} credential")
    fields = {}
    for part in rest.split(","):
        name, eq, value = part.strip().partition("=")
        if not eq:
            raise AuthError("malformed credential")
        fields[name] = value
    if not {"key", "ts", "nonce", "sig"} <= fields.keys():
        raise AuthError("credential lacks key, ts, nonce or sig")
    return fields


class ReplayCache:
    """Nonces seen recently, oldest first, each until it expires."""

    def __init__(self, window: float, limit: int = MAX_REMEMBERED_NONCES) -> None:
        self.window = window
        self.limit = limit
        self._seen: OrderedDict[str, float] = OrderedDict()

    def first_use(self, nonce: str, now: float) -> bool:
        """Whether ``nonce`` is new; it is remembered either way."""
        while self._seen:
            oldest, expires = next(iter(self._seen.items()))
            if expires > now and len(self._seen) < self.limit:
                break
            self._seen.popitem(last=False)
        if nonce in self._seen:
            return False
        self._seen[nonce] = now + self.window
        return True


class Verifier:
    """Checks ``RingFS-RPC`` credentials against the cluster's keys (the current secret's and, during a
    rotation, the previous one's)."""

    def __init__(self, keys: list[SigningKey], max_age: float = MAX_AGE) -> None:
        self.keys = {k.key_id: k for k in keys}
        self.max_age = max_age
        self.replays = ReplayCache(2 * max_age)

    def verify(self, header: str | None, method: str, target: str, now: float | None = None) -> None:
        """Raises :class:`AuthError` unless ``header`` is a valid, fresh, first-seen credential for this
        request."""
        if not header:
            raise AuthError("this endpoint needs the cluster credential")
        fields = parse(header)
        key = self.keys.get(fields["key"])
        if key is None:
            raise AuthError("the credential is signed with a key this cluster does not know")
        expected = hmac.digest(key.key, string_to_sign(method, target, fields["ts"], fields["nonce"]), "sha256").hex()
        if not hmac.compare_digest(expected, fields["sig"]):
            raise AuthError("the credential's signature does not match the request")
        now = time.time() if now is None else now
        if not fields["ts"].isdigit() or abs(now - int(fields["ts"]) / 1000) > self.max_age:
            raise AuthError(f"the credential has expired (signed more than {self.max_age:.0f} s from now)")
        if not self.replays.first_use(fields["nonce"], now):
            raise AuthError("the credential was already used (a replayed request)")
