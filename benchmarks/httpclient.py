"""A minimal keep-alive HTTP client on ``http.client`` so the benchmark client is never the bottleneck.

One :class:`Conn` is one TCP connection; every response is read fully before the next request. It sends
the access key of ``RINGFS_ACCESS_KEY`` / ``RINGFS_SECRET_KEY`` as HTTP Basic when they are set (the
benchmark sets them to its cluster's root key, ``benchmarks/cluster.py``), so auth is counted in every
figure; SeaweedFS runs without them.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
from typing import Iterable
from urllib.parse import quote, urlsplit


class HTTPError(Exception):
    def __init__(self, status: int, body: bytes, what: str) -> None:
        super().__init__(f"{what}: HTTP {status}: {body[:300]!r}")
        self.status = status


_RETRYABLE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, http.client.CannotSendRequest)


class Conn:
    def __init__(self, url: str, timeout: float = 300.0) -> None:
        u = urlsplit(url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None
        self.reconnects = 0
        key, secret = os.environ.get("RINGFS_ACCESS_KEY"), os.environ.get("RINGFS_SECRET_KEY")
        self.auth = {"Authorization": "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()} \
            if key and secret else {}

    def _connect(self) -> http.client.HTTPConnection:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def __enter__(self) -> "Conn":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @staticmethod
    def files_url(path: str, query: str = "") -> str:
        return "/files/" + quote(path.lstrip("/"), safe="/") + (f"?{query}" if query else "")

    def _send(self, method: str, url: str, body=None, headers: dict | None = None,
              retry: bool = True) -> http.client.HTTPResponse:
        """Send one request and return the response (headers read, body not yet). Retries once on a
        fresh connection when the server had closed an idle keep-alive connection (bytes bodies only)."""
        try:
            conn = self._connect()
            conn.request(method, url, body=body, headers={**self.auth, **(headers or {})})
            return conn.getresponse()
        except _RETRYABLE:
            self.close()
            if not retry or not (body is None or isinstance(body, (bytes, bytearray))):
                raise
            self.reconnects += 1
            conn = self._connect()
            conn.request(method, url, body=body, headers={**self.auth, **(headers or {})})
            return conn.getresponse()

    def put(self, path: str, data: bytes, query: str = "") -> bytes:
        resp = self._send("PUT", self.files_url(path, query), body=data,
                          headers={"Content-Type": "application/octet-stream"})
        body = resp.read()
        if resp.status != 201:
            raise HTTPError(resp.status, body, f"PUT {path}")
        return body

    def get(self, path: str) -> bytes:
        resp = self._send("GET", self.files_url(path))
        body = resp.read()
        if resp.status != 200:
            raise HTTPError(resp.status, body, f"GET {path}")
        return body

    def put_stream(self, path: str, blocks: Iterable[bytes], size: int, query: str = "") -> bytes:
        """PUT ``size`` bytes from an iterator of blocks, never holding the whole body."""
        resp = self._send("PUT", self.files_url(path, query), body=blocks,
                          headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                          retry=False)
        body = resp.read()
        if resp.status != 201:
            raise HTTPError(resp.status, body, f"PUT {path}")
        return body

    def get_stream_sha256(self, path: str, block: int = 1 << 20) -> tuple[int, str]:
        """GET ``path`` streamed, discarding the bytes while hashing them: (byte count, sha256 hex)."""
        resp = self._send("GET", self.files_url(path))
        if resp.status != 200:
            raise HTTPError(resp.status, resp.read(), f"GET {path}")
        h = hashlib.sha256()
        buf = bytearray(block)
        view = memoryview(buf)
        n = 0
        while True:
            got = resp.readinto(view)
            if not got:
                break
            h.update(view[:got])
            n += got
        return n, h.hexdigest()
