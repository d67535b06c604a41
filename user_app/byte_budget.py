"""An async byte semaphore, first come first served: bounds the bytes a user app holds for a kind of work
(multi-file bodies, files being written, read rounds in flight)."""

from __future__ import annotations

import asyncio
from collections import deque


class ByteBudget:
    """At most ``limit`` bytes held at once. :meth:`acquire` of more than ``limit`` takes the whole budget
    (it waits until nothing else holds any). Waiters are served in arrival order."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._waiters: deque[tuple[int, asyncio.Future]] = deque()

    async def acquire(self, n: int) -> int:
        """Wait until ``n`` bytes (capped at the limit) fit; returns the amount to :meth:`release`."""
        n = min(max(n, 0), self.limit)
        if not self._waiters and self.used + n <= self.limit:
            self.used += n
            return n
        fut = asyncio.get_running_loop().create_future()
        item = (n, fut)
        self._waiters.append(item)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # granted just as it was cancelled
                self.release(n)
            else:
                self._waiters.remove(item)
                self._grant()  # it may have been blocking the head of the queue
            raise
        return n

    @property
    def idle(self) -> bool:
        """Nothing held and nobody waiting."""
        return self.used == 0 and not self._waiters

    def release(self, n: int) -> None:
        self.used -= n
        self._grant()

    def _grant(self) -> None:
        while self._waiters:
            n, fut = self._waiters[0]
            if self.used + n > self.limit:
                return
            self._waiters.popleft()
            self.used += n
            fut.set_result(None)
