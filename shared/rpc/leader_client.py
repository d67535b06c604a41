"""Calls to the leader (docs/protocol.md, "Leader"), from user apps and chunk servers.

Every leader answer carries ``X-Ring-Epoch``; each one is handed to ``on_epoch`` so a ring cache notices a
membership change from any reply (shared/rpc/ring_cache.py). Errors are what :meth:`Transport.call`
raises; a malformed answer is an :class:`UpstreamError`.
"""

from __future__ import annotations

from typing import Any, Callable
from urllib.parse import quote

import orjson

from shared.errors import RingFSError, UpstreamError, error_for_status
from shared.protocol.batches import encode_version_sections
from shared.protocol.frames import pack_digests, unpack_digests
from shared.protocol.manifests import Manifest, decode_manifest, decode_manifests
from shared.protocol.models import (
    AccessKeyInfo, AccessKeySecret, BatchError, NewAccessKey, PreparedVersion, RegistrationResult, RingView,
    ServerRegistration, VersionInfo, VersionPrepare,
)
from shared.protocol.rules import JSON, OCTET_STREAM, RING_EPOCH_HEADER
from shared.rpc.transport import RpcResponse, Transport, parsed


def _query_value(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


class LeaderClient:
    """``rpc_*`` calls on the leader at ``leader_url``, over one :class:`Transport`."""

    def __init__(self, transport: Transport, leader_url: str) -> None:
        self.transport = transport
        self.leader_url = leader_url.rstrip("/")
        self.peer = f"leader at {self.leader_url}"
        self.on_epoch: Callable[[int], None] | None = None  # set by the ring cache

    async def call(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                   body: bytes | memoryview | None = None, content_type: str | None = None,
                   timeout: float | None = None) -> RpcResponse:
        """One request to the leader; notes the ring epoch of its answer."""
        resp = await self.transport.call(method, self.leader_url + path, peer=self.peer, params=params, body=body,
                                         content_type=content_type, timeout=timeout)
        epoch = resp.headers.get(RING_EPOCH_HEADER)
        if epoch is not None and epoch.isdigit() and self.on_epoch is not None:
            self.on_epoch(int(epoch))
        return resp

    def _parsed(self, resp: RpcResponse, what: str, parse):
        return parsed(resp, self.peer, what, parse)

    # ------------------------------------------------------------ membership

    async def rpc_ring(self) -> RingView:
        """``GET /ring``: the ring at the current epoch and the cluster policy."""
        return self._parsed(await self.call("GET", "/ring"), "ring", lambda r: RingView.model_validate_json(r.body))

    async def rpc_register(self, registration: ServerRegistration, timeout: float | None = None) -> RegistrationResult:
        """``POST /servers``: a chunk server joins (or rejoins) the ring."""
        resp = await self.call("POST", "/servers", body=registration.model_dump_json().encode(), content_type=JSON,
                               timeout=timeout)
        return self._parsed(resp, "registration", lambda r: RegistrationResult.model_validate_json(r.body))

    # ------------------------------------------------------------ two-phase commit (phases 2 and 4)

    async def rpc_prepare_version(self, prepare: VersionPrepare, digests: bytes | memoryview) -> PreparedVersion:
        """Phase 2 (``POST /txns``): record the name mapping as pending."""
        params = {k: _query_value(v) for k, v in prepare.model_dump(exclude_none=True).items()}
        resp = await self.call("POST", "/txns", params=params, body=digests, content_type=OCTET_STREAM)
        return self._parsed(resp, "prepare", lambda r: PreparedVersion.model_validate_json(r.body))

    async def rpc_prepare_versions(self, items: list[tuple[VersionPrepare, bytes | memoryview]]
                                   ) -> list[PreparedVersion | RingFSError]:
        """Phase 2 for several txns in one request (``POST /txns/batch``): per item, in order, its result
        or the error its own ``POST /txns`` would have raised."""
        resp = await self.call("POST", "/txns/batch", body=encode_version_sections(items), content_type=OCTET_STREAM)
        return self._parsed(resp, "batch prepare", lambda r: self._per_txn(
            r, [p.txn_id for p, _ in items], PreparedVersion))

    async def rpc_commit_version(self, txn_id: str) -> VersionInfo:
        """Phase 4 (``POST /txns/{txn_id}/commit``): make the version visible."""
        resp = await self.call("POST", f"/txns/{txn_id}/commit")
        return self._parsed(resp, "commit", lambda r: VersionInfo.model_validate_json(r.body))

    async def rpc_commit_versions(self, txn_ids: list[str]) -> list[VersionInfo | RingFSError]:
        """Phase 4 for several txns in one request (``POST /txns/batch-commit``): per txn, in order."""
        resp = await self.call("POST", "/txns/batch-commit", body=orjson.dumps({"txn_ids": txn_ids}), content_type=JSON)
        return self._parsed(resp, "batch commit", lambda r: self._per_txn(r, txn_ids, VersionInfo))

    def _per_txn(self, resp: RpcResponse, txn_ids: list[str], model) -> list:
        results = resp.json()["results"]
        out = []
        for txn_id in txn_ids:
            entry = results[txn_id]
            if "error" in entry and "status" in entry:
                err = BatchError.model_validate(entry)
                out.append(error_for_status(err.status, err.error, self.peer))
            else:
                out.append(model.model_validate(entry))
        return out

    async def rpc_abort_version(self, txn_id: str) -> None:
        """Drop the pending version of ``txn_id``."""
        await self.call("POST", f"/txns/{txn_id}/abort")

    # ------------------------------------------------------------ reads

    async def rpc_manifest(self, path: str, version: int | None = None) -> Manifest:
        """``GET /manifest``: the latest (or a given) committed version of ``path`` and its chunk list."""
        params: dict[str, Any] = {"path": path} if version is None else {"path": path, "version": version}
        resp = await self.call("GET", "/manifest", params=params)
        return self._parsed(resp, "manifest", lambda r: decode_manifest(r.body))

    async def rpc_manifests(self, paths: list[str], version: int | None = None,
                            max_size: int | None = None) -> list[Manifest | RingFSError]:
        """``POST /manifests``: per path, in order, its manifest or the error the leader answered for it
        (``PayloadTooLarge`` for a file over ``max_size`` bytes, or past the answer's chunk budget)."""
        if not paths:
            return []
        body = orjson.dumps({"paths": paths, "version": version, "max_size": max_size})
        resp = await self.call("POST", "/manifests", body=body, content_type=JSON)
        entries = self._parsed(resp, "manifests", lambda r: decode_manifests(r.body))
        if len(entries) != len(paths):
            raise UpstreamError(f"{self.peer} answered {len(entries)} manifests for {len(paths)} paths")
        return [error_for_status(e.status, e.error, self.peer) if isinstance(e, BatchError) else e for e in entries]

    async def rpc_stat(self, path: str, version: int | None = None) -> VersionInfo:
        params: dict[str, Any] = {"path": path} if version is None else {"path": path, "version": version}
        return self._parsed(await self.call("GET", "/stat", params=params), "stat",
                            lambda r: VersionInfo.model_validate_json(r.body))

    async def rpc_versions(self, path: str) -> list[VersionInfo]:
        resp = await self.call("GET", "/versions", params={"path": path})
        return self._parsed(resp, "versions", lambda r: [VersionInfo.model_validate(v) for v in r.json()["versions"]])

    async def rpc_undelete(self, path: str) -> VersionInfo:
        """``POST /undelete``: restore the most recent delete of ``path``; the restored version."""
        resp = await self.call("POST", "/undelete", body=orjson.dumps({"path": path}), content_type=JSON)
        return self._parsed(resp, "undelete", lambda r: VersionInfo.model_validate(r.json()["stat"]))

    async def rpc_json(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                       json: Any = None, timeout: float | None = None) -> Any:
        """A namespace call whose JSON answer the user app passes on as it is (list, rename, delete, trash,
        fsck)."""
        body = orjson.dumps(json) if json is not None else None
        resp = await self.call(method, path, params=params, body=body, content_type=JSON if body else None,
                               timeout=timeout)
        return self._parsed(resp, path, lambda r: r.json())

    # ------------------------------------------------------------ access keys

    async def rpc_key(self, access_key: str) -> AccessKeySecret:
        """``GET /keys/{access_key}``: the key with its secret (to check a request signed with it).
        Raises :class:`NotFound` for an unknown key."""
        resp = await self.call("GET", f"/keys/{quote(access_key, safe='')}")
        return self._parsed(resp, "key", lambda r: AccessKeySecret.model_validate_json(r.body))

    async def rpc_keys(self) -> list[AccessKeyInfo]:
        resp = await self.call("GET", "/keys")
        return self._parsed(resp, "keys", lambda r: [AccessKeyInfo.model_validate(k) for k in r.json()["keys"]])

    async def rpc_create_key(self, new: NewAccessKey) -> AccessKeySecret:
        resp = await self.call("POST", "/keys", body=new.model_dump_json().encode(), content_type=JSON)
        return self._parsed(resp, "key", lambda r: AccessKeySecret.model_validate_json(r.body))

    async def rpc_delete_key(self, access_key: str) -> None:
        await self.call("DELETE", f"/keys/{quote(access_key, safe='')}")

    # ------------------------------------------------------------ garbage collection

    async def rpc_gc_unreferenced(self, digests: list[bytes]) -> list[bytes]:
        """``POST /gc/unreferenced``: those of ``digests`` no version references. Raises
        :class:`UpstreamError` if the leader names a digest that was not asked about."""
        resp = await self.call("POST", "/gc/unreferenced", body=pack_digests(digests), content_type=OCTET_STREAM)
        unreferenced = self._parsed(resp, "gc", lambda r: unpack_digests(r.body))
        asked = set(digests)
        if any(d not in asked for d in unreferenced):
            raise UpstreamError(f"{self.peer} answered /gc/unreferenced with digests that were not asked about")
        return unreferenced
