"""Calls from a user app to its peers: the leader's metadata API and the chunk servers' batch API.

Client-side calls are named ``rpc_*`` (Garage style) so they read apart from the handlers they reach.
Transport failures are translated here into :class:`Unavailable`; a peer's JSON error keeps its status
and message, so a 400/404/412 from the leader reaches the user unchanged.
"""

from __future__ import annotations

from typing import Any

import httpx

from shared.errors import (
    BadRequest, Conflict, Gone, NotFound, PayloadTooLarge, PreconditionFailed, RangeNotSatisfiable,
    IntegrityFailure, RingFSError, Unavailable, UpstreamError,
)
from shared.protocol import OCTET_STREAM, RING_EPOCH_HEADER, decode_manifest, encode_frames, pack_digests

_BY_STATUS: dict[int, type[RingFSError]] = {
    400: BadRequest, 404: NotFound, 409: Conflict, 410: Gone, 412: PreconditionFailed, 413: PayloadTooLarge,
    416: RangeNotSatisfiable, 422: IntegrityFailure, 503: Unavailable,
}


def _raise_for_peer(resp: httpx.Response, peer: str) -> None:
    if resp.status_code < 400:
        return
    try:
        message = resp.json().get("error") or resp.text
    except ValueError:
        message = resp.text[:200] or resp.reason_phrase
    cls = _BY_STATUS.get(resp.status_code)
    if cls is None:
        raise UpstreamError(f"{peer} answered {resp.status_code}: {message}")
    raise cls(message)


class PeerClient:
    """One shared keep-alive connection pool for every peer of this process."""

    def __init__(self, leader_url: str, timeout: float) -> None:
        self.leader_url = leader_url
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
        )
        self.on_epoch = None  # set by the ring cache: called with the epoch each leader reply carries

    async def aclose(self) -> None:
        await self.http.aclose()

    # ------------------------------------------------------------ leader

    async def _leader(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            resp = await self.http.request(method, self.leader_url + path, **kw)
        except httpx.HTTPError as exc:
            raise Unavailable(f"leader unreachable at {self.leader_url}: {type(exc).__name__}") from exc
        epoch = resp.headers.get(RING_EPOCH_HEADER)
        if epoch is not None and self.on_epoch is not None:
            self.on_epoch(int(epoch))
        _raise_for_peer(resp, "leader")
        return resp

    async def rpc_get_ring(self) -> dict:
        return (await self._leader("GET", "/ring")).json()

    async def rpc_prepare_version(self, *, txn_id: str, path: str, size: int, sha256: str, chunk_size: int,
                                  replication: int, create_only: bool, digests: bytes) -> dict:
        """Phase 2: register the name mapping as pending. Returns ``{"txn_id","path","version","state"}``."""
        params = {"txn_id": txn_id, "path": path, "size": size, "sha256": sha256, "chunk_size": chunk_size,
                  "replication": replication, "create_only": str(create_only).lower()}
        resp = await self._leader("POST", "/txns", params=params, content=digests,
                                  headers={"content-type": OCTET_STREAM})
        return resp.json()

    async def rpc_commit_version(self, txn_id: str) -> dict:
        """Phase 4: make the version visible. Returns its ``VersionInfo``."""
        return (await self._leader("POST", f"/txns/{txn_id}/commit")).json()

    async def rpc_abort_version(self, txn_id: str) -> None:
        await self._leader("POST", f"/txns/{txn_id}/abort")

    async def rpc_manifest(self, path: str, version: int | None) -> tuple[dict, bytes]:
        """``(VersionInfo dict, packed digests)`` of the latest or a given committed version."""
        params: dict[str, Any] = {"path": path}
        if version is not None:
            params["version"] = version
        return decode_manifest((await self._leader("GET", "/manifest", params=params)).content)

    async def rpc_leader_json(self, method: str, path: str, **kw: Any) -> Any:
        """Any other JSON call on the leader (stat, versions, list, rename, delete)."""
        return (await self._leader(method, path, **kw)).json()

    # ------------------------------------------------------------ chunk servers

    async def _chunk(self, url: str, path: str, **kw: Any) -> httpx.Response:
        try:
            resp = await self.http.post(url + path, **kw)
        except httpx.HTTPError as exc:
            raise Unavailable(f"chunk server {url} unreachable: {type(exc).__name__}") from exc
        _raise_for_peer(resp, f"chunk server {url}")
        return resp

    async def rpc_prepare_chunks(self, url: str, txn_id: str, chunks: list[tuple[bytes, memoryview]]) -> dict:
        """Phase 1: store ``chunks`` pending under ``txn_id``. Returns ``{"stored","already_committed"}``."""
        resp = await self._chunk(url, "/chunks/prepare", params={"txn_id": txn_id}, content=encode_frames(chunks),
                                 headers={"content-type": OCTET_STREAM})
        return resp.json()

    async def rpc_commit_chunks(self, url: str, txn_ids: list[str]) -> dict[str, int]:
        """Phase 3: make the txns' pending chunks permanent. Returns chunks committed per txn id."""
        return (await self._chunk(url, "/chunks/commit", json={"txn_ids": txn_ids})).json()["committed"]

    async def rpc_abort_chunks(self, url: str, txn_ids: list[str]) -> None:
        await self._chunk(url, "/chunks/abort", json={"txn_ids": txn_ids})

    async def rpc_read_chunks(self, url: str, digests: list[bytes]) -> bytes:
        """Chunk frames for ``digests`` (``MISSING`` where the server holds no committed copy)."""
        resp = await self._chunk(url, "/chunks/read", content=pack_digests(digests),
                                 headers={"content-type": OCTET_STREAM})
        return resp.content

    async def rpc_chunks_exist(self, url: str, digests: list[bytes]) -> bytes:
        """One ``ChunkPresence`` byte per digest."""
        resp = await self._chunk(url, "/chunks/exists", content=pack_digests(digests),
                                 headers={"content-type": OCTET_STREAM})
        return resp.content

