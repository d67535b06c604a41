"""Leader batching: phase-2 prepares and phase-4 commits of concurrent uploads share leader requests.

The leader's version calls are small, so per-request overhead (HTTP, routing, one transaction each)
dominates its CPU under many concurrent small uploads. As :mod:`user_app.group_commit` does for phase 3,
a call that finds no request of its kind in flight goes out at once through the single endpoint
(``POST /txns``, ``POST /txns/{txn_id}/commit``), so one sequential upload pays nothing extra; calls
arriving while one is in flight queue, and when it returns they go together in one batch request
(``POST /txns/batch``, ``POST /txns/batch-commit``; a queue of one uses the single endpoint again).

Each call returns exactly what the single call returns and raises the same :class:`RingFSError`
subclass with the same message: a batch answers per txn ``{"error", "status"}``, mapped back here with
``peers._peer_error``. A failure of a whole batch request (leader unreachable, 503) reaches every call of
that batch.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any, Awaitable, Callable

import orjson
from prometheus_client import Counter

from shared.errors import UpstreamError
from shared.protocol import OCTET_STREAM
from user_app.peers import PeerClient, _peer_error

# Txns per batch request: the leader's bound (leader/versions.py MAX_BATCH).
MAX_PER_BATCH = 512

LEADER_REQUESTS = Counter(
    "ringfs_user_leader_requests_total",
    "Version requests sent to the leader by kind (prepare, prepare_batch, commit, commit_batch); "
    "the batcher coalesces concurrent uploads' calls into the *_batch kinds",
    ["kind"],
)
_COUNT = {kind: LEADER_REQUESTS.labels(kind) for kind in ("prepare", "prepare_batch", "commit", "commit_batch")}

_U32 = struct.Struct(">I")
_OCTETS = {"Content-Type": OCTET_STREAM}
_JSON = {"Content-Type": "application/json"}


class _Lane:
    """One kind of call (prepare or commit): whether a request is in flight, and who waits for the next."""

    def __init__(self) -> None:
        self.running = False
        self.waiting: list[tuple[str, Any, asyncio.Future]] = []


class LeaderBatcher:
    """Coalesces ``rpc_prepare_version`` and ``rpc_commit_version`` calls of one user app. Create it
    inside the running event loop (as its :class:`PeerClient`)."""

    def __init__(self, peers: PeerClient) -> None:
        self.peers = peers
        self._prepares = _Lane()
        self._commits = _Lane()
        self._tasks: set[asyncio.Task] = set()  # strong references to the drain tasks

    # ------------------------------------------------------------ the calls

    async def prepare_version(self, *, txn_id: str, path: str, size: int, sha256: str, chunk_size: int,
                              replication: int, create_only: bool, digests: bytes) -> dict:
        """Phase 2, as :meth:`PeerClient.rpc_prepare_version`: ``{"txn_id","path","version","state"}``."""
        kw = {"txn_id": txn_id, "path": path, "size": size, "sha256": sha256, "chunk_size": chunk_size,
              "replication": replication, "create_only": create_only, "digests": digests}
        return await self._submit(self._prepares, txn_id, kw, self._prepare_one, self._prepare_batch)

    async def commit_version(self, txn_id: str) -> dict:
        """Phase 4, as :meth:`PeerClient.rpc_commit_version`: the version's ``VersionInfo``."""
        return await self._submit(self._commits, txn_id, txn_id, self._commit_one, self._commit_batch)

    # ------------------------------------------------------------ coalescing

    async def _submit(self, lane: _Lane, key: str, payload: Any, one: Callable[[Any], Awaitable[dict]],
                      many: Callable[[list[tuple[str, Any]]], Awaitable[dict[str, dict]]]) -> dict:
        if not lane.running:
            # Nothing of this kind in flight: go now, alone. Whoever queues meanwhile goes in the batch
            # that the drain task sends when this returns (``running`` stays set until it is done).
            lane.running = True
            try:
                return await one(payload)
            finally:
                self._hand_off(lane, one, many)
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        lane.waiting.append((key, payload, future))
        return await future

    def _hand_off(self, lane: _Lane, one, many) -> None:
        if lane.waiting:
            task = asyncio.get_running_loop().create_task(self._drain(lane, one, many))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            lane.running = False

    async def _drain(self, lane: _Lane, one, many) -> None:
        batch: list[tuple[str, Any, asyncio.Future]] = []
        try:
            while lane.waiting:
                batch = self._take(lane)
                if len(batch) == 1:
                    key, payload, fut = batch[0]
                    try:
                        _settle(fut, result=await one(payload))
                    except Exception as exc:  # noqa: BLE001 - handed to the caller
                        _settle(fut, exc=exc)
                elif batch:
                    try:
                        results = await many([(key, payload) for key, payload, _ in batch])
                    except Exception as exc:  # noqa: BLE001 - every waiter of the batch sees the failure
                        for _, _, fut in batch:
                            _settle(fut, exc=exc)
                        continue
                    for key, _, fut in batch:
                        _settle(fut, **self._outcome(key, results.get(key)))
        except BaseException as exc:  # cancelled (shutdown): nobody may wait forever
            for _, _, fut in batch + lane.waiting:
                _settle(fut, exc=exc)
            lane.waiting = []
            raise
        finally:
            lane.running = False

    def _outcome(self, key: str, result: Any) -> dict:
        """``result`` of one txn of a batch answer as _settle's keyword: the dict, or the error its single
        request would have raised."""
        peer = f"leader at {self.peers.leader_url}"
        if not isinstance(result, dict):
            return {"exc": UpstreamError(f"{peer} answered no result for txn {key!r}")}
        if "error" in result and "status" in result:
            return {"exc": _peer_error(int(result["status"]), orjson.dumps({"error": result["error"]}), peer)}
        return {"result": result}

    @staticmethod
    def _take(lane: _Lane) -> list[tuple[str, Any, asyncio.Future]]:
        """The next batch: up to MAX_PER_BATCH waiting calls with distinct txn ids (a repeat waits for the
        next batch, results being keyed by txn id); calls whose caller went away are dropped."""
        batch, keys, rest = [], set(), []
        for item in lane.waiting:
            key, _, fut = item
            if fut.done():
                continue
            if key in keys or len(batch) >= MAX_PER_BATCH:
                rest.append(item)
            else:
                keys.add(key)
                batch.append(item)
        lane.waiting = rest
        return batch

    # ------------------------------------------------------------ requests

    async def _prepare_one(self, kw: dict) -> dict:
        _COUNT["prepare"].inc()
        return await self.peers.rpc_prepare_version(**kw)

    async def _commit_one(self, txn_id: str) -> dict:
        _COUNT["commit"].inc()
        return await self.peers.rpc_commit_version(txn_id)

    async def _prepare_batch(self, items: list[tuple[str, dict]]) -> dict[str, dict]:
        parts = []
        for _, kw in items:
            meta = orjson.dumps({k: v for k, v in kw.items() if k != "digests"})
            parts += [_U32.pack(len(meta)), meta, _U32.pack(len(kw["digests"])), kw["digests"]]
        _COUNT["prepare_batch"].inc()
        body = await self.peers.leader_request("POST", "/txns/batch", data=b"".join(parts), headers=_OCTETS)
        return orjson.loads(body)["results"]

    async def _commit_batch(self, items: list[tuple[str, str]]) -> dict[str, dict]:
        _COUNT["commit_batch"].inc()
        body = await self.peers.leader_request("POST", "/txns/batch-commit",
                                               data=orjson.dumps({"txn_ids": [key for key, _ in items]}), headers=_JSON)
        return orjson.loads(body)["results"]


def _settle(fut: asyncio.Future, *, result: Any = None, exc: BaseException | None = None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)
