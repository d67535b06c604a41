"""A token bucket that paces background I/O in bytes per second (anti-entropy pushes, scrub reads)."""

from __future__ import annotations

import asyncio
import time

# One second of budget may be spent at once: a batch goes out whole, then the job waits for it to be paid.
BURST_SECONDS = 1.0


class TokenBucket:
    """``await consume(n)`` returns once ``n`` bytes fit in ``rate`` bytes/s (a debt is paid by sleeping,
    so a batch larger than the burst is sent at once and the next one waits)."""

    def __init__(self, rate: float) -> None:
        self.rate = float(rate)
        self.tokens = self.rate * BURST_SECONDS
        self.stamp = time.monotonic()

    async def consume(self, n: int) -> None:
        now = time.monotonic()
        self.tokens = min(self.rate * BURST_SECONDS, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= n
        if self.tokens < 0:
            await asyncio.sleep(-self.tokens / self.rate)
