"""Calls from a user app to its peers: the leader's metadata API and the chunk servers' batch API.

Client-side calls are named ``rpc_*`` (Garage style) so they read apart from the handlers they reach.
Transport failures are translated here into :class:`Unavailable`; a peer's JSON error keeps its status
and message, so a 400/404/412 from the leader reaches the user unchanged.

The transport is aiohttp with one keep-alive connection pool per process. Profiled on this machine
(1000 sequential small POSTs to a chunk server), httpx's AsyncClient cost 1,219 µs of client CPU per
request against aiohttp's 260 µs; a small-file write makes eight such calls, so this is the user
app's largest cost (benchmarks/, docs/benchmark.md).
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

import aiohttp
import orjson

from shared.errors import (
    BadRequest, Conflict, Gone, IntegrityFailure, NotFound, PayloadTooLarge, PreconditionFailed,
    RangeNotSatisfiable, RingFSError, Unavailable, UpstreamError,
)
from shared.logs import REQUEST_ID_HEADER, request_id
from shared.protocol import OCTET_STREAM, RING_EPOCH_HEADER, decode_manifest, encode_frames, pack_digests

_BY_STATUS: dict[int, type[RingFSError]] = {
    400: BadRequest, 404: NotFound, 409: Conflict, 410: Gone, 412: PreconditionFailed, 413: PayloadTooLarge,
    416: RangeNotSatisfiable, 422: IntegrityFailure, 503: Unavailable,
}
_OCTETS = {"Content-Type": OCTET_STREAM}
_JSON = {"Content-Type": "application/json"}


def _peer_error(status: int, body: bytes, peer: str) -> RingFSError:
    try:
        message = orjson.loads(body).get("error") or body[:200].decode(errors="replace")
    except (ValueError, AttributeError):
        message = body[:200].decode(errors="replace") or f"HTTP {status}"
    cls = _BY_STATUS.get(status)
    if cls is None:
        return UpstreamError(f"{peer} answered {status}: {message}")
    return cls(message)


class PeerClient:
    """One shared keep-alive connection pool for every peer of this process. Create it inside the
    running event loop (the app's lifespan)."""

    def __init__(self, leader_url: str, timeout: float) -> None:
        self.leader_url = leader_url
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=512, limit_per_host=128, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 3.0)),
            skip_auto_headers=("User-Agent",),
        )
        self.on_epoch: Callable[[int], None] | None = None  # set by the ring cache

    async def aclose(self) -> None:
        await self.http.close()

    async def request(self, method: str, url: str, peer: str, **kw: Any) -> tuple[bytes, Any]:
        """One request; returns ``(body, headers)``. Raises :class:`Unavailable` when the peer cannot be
        reached, or the peer's error as a :class:`RingFSError`."""
        headers = {**kw.pop("headers", {}), REQUEST_ID_HEADER: request_id.get()}
        try:
            async with self.http.request(method, url, headers=headers, **kw) as resp:
                body = await resp.read()
                status, headers = resp.status, resp.headers
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise Unavailable(f"{peer} unreachable: {type(exc).__name__}") from exc
        if status >= 400:
            raise _peer_error(status, body, peer)
        return body, headers

    # ------------------------------------------------------------ leader

    async def leader_request(self, method: str, path: str, **kw: Any) -> bytes:
        body, headers = await self.request(method, self.leader_url + path, f"leader at {self.leader_url}", **kw)
        epoch = headers.get(RING_EPOCH_HEADER)
        if epoch is not None and self.on_epoch is not None:
            self.on_epoch(int(epoch))
        return body

    async def rpc_get_ring(self) -> dict:
        return orjson.loads(await self.leader_request("GET", "/ring"))

    async def rpc_prepare_version(self, *, txn_id: str, path: str, size: int, sha256: str, chunk_size: int,
                                  replication: int, create_only: bool, digests: bytes) -> dict:
        """Phase 2: register the name mapping as pending. Returns ``{"txn_id","path","version","state"}``."""
        params = {"txn_id": txn_id, "path": path, "size": size, "sha256": sha256, "chunk_size": chunk_size,
                  "replication": replication, "create_only": str(create_only).lower()}
        return orjson.loads(await self.leader_request("POST", "/txns", params=params, data=digests, headers=_OCTETS))

    async def rpc_commit_version(self, txn_id: str) -> dict:
        """Phase 4: make the version visible. Returns its ``VersionInfo``."""
        return orjson.loads(await self.leader_request("POST", f"/txns/{txn_id}/commit"))

    async def rpc_abort_version(self, txn_id: str) -> None:
        await self.leader_request("POST", f"/txns/{txn_id}/abort")

    async def rpc_manifest(self, path: str, version: int | None) -> tuple[dict, bytes]:
        """``(VersionInfo dict, packed digests)`` of the latest or a given committed version."""
        params: dict[str, Any] = {"path": path}
        if version is not None:
            params["version"] = version
        return decode_manifest(await self.leader_request("GET", "/manifest", params=params))

    async def rpc_leader_json(self, method: str, path: str, *, params: dict | None = None,
                              json: Any = None) -> Any:
        """Any other JSON call on the leader (stat, versions, list, rename, delete, trash, fsck)."""
        kw: dict[str, Any] = {"params": params} if params else {}
        if json is not None:
            kw.update(data=orjson.dumps(json), headers=_JSON)
        return orjson.loads(await self.leader_request(method, path, **kw))

    # ------------------------------------------------------------ chunk servers

    async def _chunk(self, url: str, path: str, **kw: Any) -> bytes:
        body, _ = await self.request("POST", url + path, f"chunk server {url}", **kw)
        return body

    async def rpc_prepare_chunks(self, url: str, txn_id: str, chunks: list[tuple[bytes, memoryview]]) -> dict:
        """Phase 1: store ``chunks`` pending under ``txn_id``. Returns ``{"stored","already_committed"}``."""
        body = await self._chunk(url, "/chunks/prepare", params={"txn_id": txn_id}, data=encode_frames(chunks),
                                 headers=_OCTETS)
        return orjson.loads(body)

    async def rpc_commit_chunks(self, url: str, txn_ids: list[str]) -> dict[str, int]:
        """Phase 3: make the txns' pending chunks permanent. Returns chunks committed per txn id."""
        body = await self._chunk(url, "/chunks/commit", data=orjson.dumps({"txn_ids": txn_ids}), headers=_JSON)
        return orjson.loads(body)["committed"]

    async def rpc_abort_chunks(self, url: str, txn_ids: list[str]) -> None:
        await self._chunk(url, "/chunks/abort", data=orjson.dumps({"txn_ids": txn_ids}), headers=_JSON)

    async def rpc_read_chunks(self, url: str, digests: list[bytes]) -> bytes:
        """Chunk frames for ``digests`` (``MISSING`` where the server holds no committed copy)."""
        return await self._chunk(url, "/chunks/read", data=pack_digests(digests), headers=_OCTETS)

    async def rpc_chunks_exist(self, url: str, digests: list[bytes]) -> bytes:
        """One ``ChunkPresence`` byte per digest."""
        return await self._chunk(url, "/chunks/exists", data=pack_digests(digests), headers=_OCTETS)

    async def rpc_chunk_server_stats(self, url: str, timeout: float = 2.0) -> dict:
        """A chunk server's ``GET /stats``: chunks, bytes, disk_bytes, pending and job counters."""
        body, _ = await self.request("GET", url + "/stats", f"chunk server {url}",
                                   timeout=aiohttp.ClientTimeout(total=timeout))
        return orjson.loads(body)

    async def rpc_verify_chunks(self, url: str, digests: list[bytes]) -> dict:
        """Ask a server to re-hash ``digests`` now, quarantining and repairing bad copies (read repair)."""
        return orjson.loads(await self._chunk(url, "/chunks/verify", data=pack_digests(digests), headers=_OCTETS))
