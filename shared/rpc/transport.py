"""The one HTTP client for internal calls, and the one place that shapes every internal request.

Every call from one RingFS service to another (user app → leader and chunk servers, chunk server → peers
and leader, leader → chunk servers) goes through :meth:`Transport.call`:

* **headers**: :meth:`Transport.request_headers` adds what every internal request carries: the cluster
  credential (``shared/auth/rpc_signing.py``: an HMAC of the request line, a time stamp and a nonce) and
  the request id, so one upload can be followed across every service's log. It is the only place that
  can add a header to every internal request.
* **TLS**: with ``TLS_CA_FILE`` the pool trusts that private CA for ``https://`` peers.
* **errors**: a transport failure (refused, reset, timed out) becomes :class:`Unavailable`; an answer
  of 400 or more becomes the :mod:`shared.errors` class of its status (``error_for_status``), with the
  peer's own ``{"error"}`` message, so a 404 from the leader is a ``NotFound`` at the user app too.

The library is aiohttp, one keep-alive pool per process, created lazily inside the running event loop.
Profiled on this machine (1000 sequential small POSTs to a chunk server), httpx's AsyncClient cost
1,219 µs of client CPU per request against aiohttp's 260 µs (docs/benchmark.md).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Any, Callable, Mapping, TypeVar
from urllib.parse import urlencode

import aiohttp
import orjson
from multidict import CIMultiDictProxy
from pydantic import ValidationError
from yarl import URL

from shared.auth.cluster_secret import SigningKey
from shared.auth.rpc_signing import HEADER as CLUSTER_AUTH_HEADER, sign
from shared.errors import (
    ACTIVE_LEADER_HEADER, BadRequest, NotActiveLeader, Unavailable, UpstreamError, error_for_status,
)
from shared.logs import REQUEST_ID_HEADER, request_id

# Connections kept per process and per peer: a user app talks to a leader and tens of chunk servers, each
# over a few concurrent requests; the leader's health checks need one per server.
POOL_LIMIT = 512
POOL_LIMIT_PER_HOST = 128
# Seconds an idle pooled connection is kept; below the servers' keep-alive (shared.http.SERVER_KEEP_ALIVE),
# so a client never reuses a connection the server is closing.
POOL_KEEPALIVE = 30.0
CONNECT_TIMEOUT = 3.0  # seconds to open a connection: a peer that does not accept in 3 s is down

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RpcResponse:
    """A successful (< 400) answer: its status, body and headers."""

    status: int
    body: bytes
    headers: CIMultiDictProxy[str]

    def json(self) -> Any:
        return orjson.loads(self.body)


def peer_message(body: bytes, status: int) -> str:
    """The ``{"error"}`` message of an error answer, or the start of its body."""
    try:
        doc = orjson.loads(body)
        if isinstance(doc, dict) and isinstance(doc.get("error"), str):
            return doc["error"]
    except ValueError:
        pass
    return body[:200].decode(errors="replace") or f"HTTP {status}"


def parsed(resp: RpcResponse, peer: str, what: str, parse: Callable[[RpcResponse], T]) -> T:
    """``parse(resp)``, or :class:`UpstreamError` when the peer's answer does not have the expected shape."""
    try:
        return parse(resp)
    except (ValueError, KeyError, TypeError, IndexError, ValidationError, BadRequest) as exc:
        raise UpstreamError(f"{peer} sent a malformed {what} answer: {exc}") from None


class Transport:
    """One connection pool for every peer of this process. ``timeout`` (seconds) bounds each call from
    start to last byte, unless a call gives its own. ``signer`` is the cluster's RPC key (``None`` only
    with ``INSECURE_NO_AUTH``); ``ssl_context`` trusts the cluster's CA for ``https://`` peers."""

    def __init__(self, timeout: float, signer: SigningKey | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.timeout = timeout
        self.signer = signer
        self.ssl_context = ssl_context
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=POOL_LIMIT, limit_per_host=POOL_LIMIT_PER_HOST,
                                               keepalive_timeout=POOL_KEEPALIVE,
                                               ssl=self.ssl_context if self.ssl_context is not None else True),
                timeout=aiohttp.ClientTimeout(total=self.timeout, sock_connect=min(self.timeout, CONNECT_TIMEOUT)),
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    def request_headers(self, method: str, target: str, content_type: str | None) -> dict[str, str]:
        """The headers of one internal request to ``target`` (path and query): every header every
        internal request carries is added here and nowhere else."""
        headers = {REQUEST_ID_HEADER: request_id.get()}
        if self.signer is not None:
            headers[CLUSTER_AUTH_HEADER] = sign(self.signer, method, target)
        if content_type is not None:
            headers["Content-Type"] = content_type
        return headers

    async def call(self, method: str, url: str, *, peer: str, params: Mapping[str, Any] | None = None,
                   body: bytes | bytearray | memoryview | None = None, content_type: str | None = None,
                   headers: Mapping[str, str] | None = None, timeout: float | None = None) -> RpcResponse:
        """One request to ``url`` (``peer`` names it in errors); returns the answer when its status is
        below 400. Raises :class:`Unavailable` when the peer cannot be reached or does not answer within
        ``timeout`` seconds, or the :mod:`shared.errors` class of the status the peer answered."""
        if params:
            url = f"{url}?{urlencode(params, doseq=True)}"
        try:
            target = URL(url, encoded=True)
            target.port  # noqa: B018 - a port that is not a number raises here, not deep in aiohttp
        except ValueError as exc:
            raise Unavailable(f"{peer} has an address that cannot be called ({exc})") from None
        sent = self.request_headers(method, target.raw_path_qs, content_type)
        if headers:
            sent.update(headers)
        kw: dict[str, Any] = {}
        if timeout is not None:
            kw["timeout"] = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, CONNECT_TIMEOUT))
        try:
            async with self._http().request(method, target, data=body, headers=sent, **kw) as resp:
                data = await resp.read()
                status, answer_headers = resp.status, resp.headers
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            raise Unavailable(f"{peer} unreachable: {type(exc).__name__}") from exc
        if status >= 400:
            if status == 503 and ACTIVE_LEADER_HEADER in answer_headers:  # a standby leader (leader/election.py)
                raise NotActiveLeader(peer_message(data, status), answer_headers[ACTIVE_LEADER_HEADER] or None)
            raise error_for_status(status, peer_message(data, status), peer)
        return RpcResponse(status, data, answer_headers)
