"""Group commit: phase-3 commits from concurrent uploads to the same chunk server share one request.

While a commit request to a server is in flight, later commits for that server wait and then go
together in the next request (``{"txn_ids": [...]}``), as a database's group commit coalesces log
flushes. One sequential upload pays nothing extra; N concurrent uploads cost about one commit round
trip per server instead of N.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from user_app.metrics import COMMIT_REQUESTS
from user_app.peers import PeerClient

# Txn ids per request: bounded so one request stays small and one slow batch cannot grow without end.
MAX_TXNS_PER_COMMIT = 512


class _ServerQueue:
    def __init__(self) -> None:
        self.waiting: dict[str, asyncio.Future] = {}
        self.running = False


class GroupCommitter:
    """Coalesces ``rpc_commit_chunks`` calls per chunk server URL."""

    def __init__(self, peers: PeerClient) -> None:
        self.peers = peers
        self._queues: dict[str, _ServerQueue] = defaultdict(_ServerQueue)

    async def commit(self, url: str, txn_id: str) -> int:
        """Commit ``txn_id`` on the server at ``url``; returns how many of its chunks the server
        committed. Raises what the commit request raised (e.g. :class:`Unavailable`)."""
        queue = self._queues[url]
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        queue.waiting[txn_id] = future
        if not queue.running:
            queue.running = True
            asyncio.create_task(self._drain(url, queue))
        return await future

    async def _drain(self, url: str, queue: _ServerQueue) -> None:
        try:
            while queue.waiting:
                batch = dict(list(queue.waiting.items())[:MAX_TXNS_PER_COMMIT])
                for txn_id in batch:
                    del queue.waiting[txn_id]
                COMMIT_REQUESTS.inc()
                try:
                    committed = await self.peers.rpc_commit_chunks(url, list(batch))
                except BaseException as exc:  # every waiter sees the failure
                    for fut in batch.values():
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                for txn_id, fut in batch.items():
                    if not fut.done():
                        fut.set_result(committed.get(txn_id, 0))
        finally:
            queue.running = False
