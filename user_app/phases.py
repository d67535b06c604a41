"""The four calls of a write's two-phase commit, each coalesced across a user app's concurrent uploads.

Reference design, "Two-Phase Commit Process": (1) chunks pending on the chunk servers, (2) the name
mapping pending on the leader, (3) commit on the chunk servers, (4) commit on the leader. Under many
concurrent small uploads each call's fixed cost (an HTTP request, a SQL transaction) dominates, so every
phase goes through a :class:`shared.rpc.coalesce.Coalescer` keyed by its peer: calls that meet a request
in flight go together in the next one (``/chunks/prepare-many``, ``/txns/batch``, one ``/chunks/commit``
with many txn ids, ``/txns/batch-commit``). A lone call uses the single endpoint, so one sequential upload
costs what it always did. Each call returns what its single request returns and raises the same
:class:`RingFSError` subclass with the same message, whether it went alone or in a batch.
"""

from __future__ import annotations

from shared.errors import RingFSError
from shared.protocol.frames import encode_frames
from shared.protocol.models import PreparedVersion, PrepareResult, VersionInfo, VersionPrepare
from shared.protocol.rules import MAX_PREPARE_REQUEST_BYTES, MAX_PREPARE_SECTIONS, MAX_TXNS_PER_BATCH
from shared.rpc.chunk_client import ChunkClient
from shared.rpc.coalesce import Coalescer
from shared.rpc.leader_client import LeaderClient
from user_app.metrics import COMMIT_REQUESTS, LEADER_REQUESTS, PREPARE_REQUESTS, PREPARE_SECTIONS

LEADER = "leader"  # the key of the leader's coalescers: there is one leader to talk to

_Frames = tuple[str, bytes]  # (txn id, encoded chunk frames)
_VersionItem = tuple[VersionPrepare, bytes | memoryview]


class PhaseCalls:
    """The coalesced phase calls of one user app process. Create it inside the running event loop."""

    def __init__(self, chunks: ChunkClient, leader: LeaderClient) -> None:
        self.chunks = chunks
        self.leader = leader
        self._prepare_chunks: Coalescer[str, _Frames, PrepareResult] = Coalescer(
            "prepare", self._send_prepares, send_one=self._send_prepare, max_items=MAX_PREPARE_SECTIONS,
            max_bytes=MAX_PREPARE_REQUEST_BYTES, size_of=lambda item: len(item[1]))
        self._commit_chunks: Coalescer[str, str, int] = Coalescer(
            "commit", self._send_commits, max_items=MAX_TXNS_PER_BATCH)
        self._prepare_versions: Coalescer[str, _VersionItem, PreparedVersion] = Coalescer(
            "prepare_version", self._send_version_prepares, send_one=self._send_version_prepare,
            max_items=MAX_TXNS_PER_BATCH)
        self._commit_versions: Coalescer[str, str, VersionInfo] = Coalescer(
            "commit_version", self._send_version_commits, send_one=self._send_version_commit,
            max_items=MAX_TXNS_PER_BATCH)

    async def aclose(self) -> None:
        for c in (self._prepare_chunks, self._commit_chunks, self._prepare_versions, self._commit_versions):
            await c.aclose()

    # ------------------------------------------------------------ the four phases

    async def prepare_chunks(self, url: str, txn_id: str, chunks: list[tuple[bytes, memoryview]]) -> PrepareResult:
        """Phase 1: ``chunks`` (digest, data) pending under ``txn_id`` on the server at ``url``."""
        return await self._prepare_chunks.submit(url, (txn_id, encode_frames(chunks)))

    async def prepare_version(self, prepare: VersionPrepare, digests: bytes | memoryview) -> PreparedVersion:
        """Phase 2: the name mapping pending on the leader, with the packed chunk digests."""
        return await self._prepare_versions.submit(LEADER, (prepare, digests))

    async def commit_chunks(self, url: str, txn_id: str) -> int:
        """Phase 3: how many of ``txn_id``'s chunks the server at ``url`` had pending and committed."""
        return await self._commit_chunks.submit(url, txn_id)

    async def commit_version(self, txn_id: str) -> VersionInfo:
        """Phase 4: the version becomes visible; its metadata."""
        return await self._commit_versions.submit(LEADER, txn_id)

    # ------------------------------------------------------------ requests

    async def _send_prepare(self, url: str, item: _Frames) -> PrepareResult:
        PREPARE_REQUESTS.labels("prepare").inc()
        PREPARE_SECTIONS.labels("prepare").inc()
        return await self.chunks.rpc_prepare(url, *item)

    async def _send_prepares(self, url: str, items: list[_Frames]) -> list[PrepareResult | RingFSError]:
        PREPARE_REQUESTS.labels("prepare-many").inc()
        PREPARE_SECTIONS.labels("prepare-many").inc(len(items))
        return await self.chunks.rpc_prepare_many(url, items)

    async def _send_commits(self, url: str, txn_ids: list[str]) -> list[int]:
        COMMIT_REQUESTS.inc()
        committed = await self.chunks.rpc_commit(url, txn_ids)
        return [committed.get(t, 0) for t in txn_ids]

    async def _send_version_prepare(self, _: str, item: _VersionItem) -> PreparedVersion:
        LEADER_REQUESTS.labels("prepare").inc()
        return await self.leader.rpc_prepare_version(*item)

    async def _send_version_prepares(self, _: str, items: list[_VersionItem]) -> list[PreparedVersion | RingFSError]:
        LEADER_REQUESTS.labels("prepare_batch").inc()
        return await self.leader.rpc_prepare_versions(items)

    async def _send_version_commit(self, _: str, txn_id: str) -> VersionInfo:
        LEADER_REQUESTS.labels("commit").inc()
        return await self.leader.rpc_commit_version(txn_id)

    async def _send_version_commits(self, _: str, txn_ids: list[str]) -> list[VersionInfo | RingFSError]:
        LEADER_REQUESTS.labels("commit_batch").inc()
        return await self.leader.rpc_commit_versions(txn_ids)
