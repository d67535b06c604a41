"""Calls to chunk servers (docs/protocol.md, "Chunk server"), from user apps, peers and the leader.

Every method takes the server's advertise URL and raises what :meth:`Transport.call` raises
(:class:`Unavailable`, or the class of the server's error status); an answer that does not parse is an
:class:`UpstreamError`: the server, not the caller, is at fault.
"""

from __future__ import annotations

from typing import Any

import orjson
from shared.errors import RingFSError, UpstreamError, error_for_status
from shared.protocol.frames import DIGEST_SIZE, encode_txn_sections, iter_frames, pack_digests, sha256
from shared.protocol.models import PrepareResult
from shared.protocol.rules import HEALTH_CHECK_HEADER, JSON, OCTET_STREAM
from shared.rpc.transport import RpcResponse, Transport, parsed

class ChunkClient:
    """``rpc_*`` calls on any chunk server, over one :class:`Transport`."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    async def _post(self, url: str, path: str, body: bytes | memoryview, content_type: str = OCTET_STREAM,
                    **kw: Any) -> tuple[RpcResponse, str]:
        peer = f"chunk server {url}"
        resp = await self.transport.call("POST", url + path, peer=peer, body=body, content_type=content_type, **kw)
        return resp, peer

    # ------------------------------------------------------------ two-phase commit (phases 1 and 3)

    async def rpc_prepare(self, url: str, txn_id: str, frames: bytes | memoryview) -> PrepareResult:
        """Phase 1: store encoded chunk frames pending under ``txn_id`` (``POST /chunks/prepare``)."""
        resp, peer = await self._post(url, "/chunks/prepare", frames, params={"txn_id": txn_id})
        return parsed(resp, peer, "prepare", lambda r: PrepareResult.model_validate_json(r.body))

    async def rpc_prepare_many(self, url: str, sections: list[tuple[str, bytes | memoryview]]
                               ) -> list[PrepareResult | RingFSError]:
        """Phase 1 for several ``(txn_id, frames)`` sections in one request (``POST /chunks/prepare-many``):
        per section, in order, its result or the error the server answered for that section alone."""
        resp, peer = await self._post(url, "/chunks/prepare-many", encode_txn_sections(sections))

        def parse(r: RpcResponse) -> list[PrepareResult | RingFSError]:
            entries = orjson.loads(r.body)["sections"]
            if len(entries) != len(sections):
                raise ValueError(f"{len(entries)} section results for {len(sections)} sections")
            return [error_for_status(int(e["status"]), e["error"], peer) if "error" in e
                    else PrepareResult.model_validate(e) for e in entries]

        return parsed(resp, peer, "prepare-many", parse)

    async def rpc_commit(self, url: str, txn_ids: list[str]) -> dict[str, int]:
        """Phase 3: commit the txns' pending chunks; per txn, how many chunks were pending for it."""
        resp, peer = await self._post(url, "/chunks/commit", orjson.dumps({"txn_ids": txn_ids}), JSON)
        return parsed(resp, peer, "commit", lambda r: {str(k): int(v) for k, v in r.json()["committed"].items()})

    async def rpc_abort(self, url: str, txn_ids: list[str]) -> dict[str, int]:
        """Drop the txns' pending chunks; per txn, how many chunks were pending for it."""
        resp, peer = await self._post(url, "/chunks/abort", orjson.dumps({"txn_ids": txn_ids}), JSON)
        return parsed(resp, peer, "abort", lambda r: {str(k): int(v) for k, v in r.json()["aborted"].items()})

    # ------------------------------------------------------------ reads and presence

    async def rpc_read(self, url: str, digests: list[bytes]) -> bytes:
        """Chunk frames for ``digests``, in order (``MISSING`` where the server holds no committed copy),
        not yet hash-checked: decode them with ``iter_frames`` and check each."""
        resp, _ = await self._post(url, "/chunks/read", pack_digests(digests))
        return resp.body

    async def rpc_read_verified(self, url: str, digests: list[bytes]) -> dict[bytes, bytes]:
        """``{digest: data}`` of the chunks the server holds committed and intact (a copy that does not
        hash to its digest is left out, as if missing)."""
        resp, peer = await self._post(url, "/chunks/read", pack_digests(digests))
        frames = parsed(resp, peer, "read", lambda r: list(iter_frames(r.body)))
        return {d: bytes(data) for d, data in frames if data is not None and sha256(data) == d}

    async def rpc_exists(self, url: str, digests: list[bytes], timeout: float | None = None) -> bytes:
        """One ``ChunkPresence`` byte per digest. A bare claim, not a proof of holding the chunk."""
        resp, peer = await self._post(url, "/chunks/exists", pack_digests(digests), timeout=timeout)
        if len(resp.body) != len(digests):
            raise UpstreamError(f"{peer} answered {len(resp.body)} presence bytes for {len(digests)} digests")
        return resp.body

    async def rpc_prove(self, url: str, nonce: bytes, digests: list[bytes]) -> list[bytes]:
        """The server's proof of possession for each digest (32 bytes each, ``NO_PROOF`` where it holds
        none), to check against ``possession_proof(nonce, own copy)``."""
        resp, peer = await self._post(url, "/chunks/prove", nonce + pack_digests(digests))
        if len(resp.body) != DIGEST_SIZE * len(digests):
            raise UpstreamError(f"{peer} answered {len(resp.body)} proof bytes for {len(digests)} digests")
        return [resp.body[i : i + DIGEST_SIZE] for i in range(0, len(resp.body), DIGEST_SIZE)]

    # ------------------------------------------------------------ repair

    async def rpc_replicate(self, url: str, frames: bytes | memoryview) -> int:
        """Store hash-checked chunk frames committed at once (anti-entropy push, repair); how many the
        server newly committed."""
        resp, peer = await self._post(url, "/chunks/replicate", frames)
        return parsed(resp, peer, "replicate", lambda r: int(r.json()["stored"]))

    async def rpc_verify(self, url: str, digests: list[bytes]) -> dict[str, int]:
        """Read repair: the server re-hashes ``digests`` now, quarantines and repairs bad copies;
        ``{"checked","corrupt","repaired"}``."""
        resp, peer = await self._post(url, "/chunks/verify", pack_digests(digests))
        return parsed(resp, peer, "verify", lambda r: {k: int(r.json()[k]) for k in ("checked", "corrupt", "repaired")})

    # ------------------------------------------------------------ operations

    async def rpc_stats(self, url: str, timeout: float | None = None) -> dict[str, Any]:
        """The server's ``GET /stats``: chunks, bytes, disk_bytes, pending and job counters."""
        peer = f"chunk server {url}"
        resp = await self.transport.call("GET", url + "/stats", peer=peer, timeout=timeout)
        return parsed(resp, peer, "stats", lambda r: dict(r.json()))

    async def rpc_healthz(self, url: str, timeout: float, challenge: str) -> dict[str, Any]:
        """The leader's health check (``GET /healthz`` with ``X-RingFS-Health-Check: <challenge>``): the
        server's answer, ``{"status","server_id","proof"}`` (``shared/auth/server_identity.py``)."""
        peer = f"chunk server {url}"
        resp = await self.transport.call("GET", url + "/healthz", peer=peer, timeout=timeout,
                                         headers={HEALTH_CHECK_HEADER: challenge})
        return parsed(resp, peer, "healthz", lambda r: dict(r.json()))
