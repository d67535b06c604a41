"""The one per-key coalescer (``shared/rpc/coalesce.py``), in-process: first-call policy, bounds, per-item
outcomes, and that no caller waits forever when a request fails or the drain is cancelled."""

from __future__ import annotations

import asyncio

import pytest

from shared.errors import NotFound, Unavailable
from shared.rpc.coalesce import Coalescer


class Peer:
    """A fake peer recording each request; ``gate`` holds every request until it is set."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, list]] = []  # (kind, key, items)
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_with: BaseException | None = None

    async def many(self, key: str, items: list[int]) -> list:
        self.requests.append(("many", key, list(items)))
        await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        return [NotFound(f"no {i}") if i < 0 else i * 10 for i in items]

    async def one(self, key: str, item: int) -> int:
        self.requests.append(("one", key, [item]))
        await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        if item < 0:
            raise NotFound(f"no {item}")
        return item * 10


def run(coro):
    return asyncio.run(coro)


def test_a_lone_call_uses_send_one_and_concurrent_calls_share_requests():
    async def main():
        peer = Peer()
        c = Coalescer("t", peer.many, send_one=peer.one, max_items=100)
        assert await c.submit("a", 1) == 10
        assert peer.requests == [("one", "a", [1])]
        # calls in the same loop turn share the first request (the next-turn policy)
        assert await asyncio.gather(*(c.submit("a", i) for i in range(2, 7))) == [20, 30, 40, 50, 60]
        assert peer.requests[1:] == [("many", "a", [2, 3, 4, 5, 6])]
        # keys never mix
        await asyncio.gather(c.submit("a", 1), c.submit("b", 2))
        assert sorted(r[1] for r in peer.requests[2:]) == ["a", "b"]
    run(main())


def test_calls_arriving_while_a_request_is_in_flight_go_together_next():
    async def main():
        peer = Peer()
        c = Coalescer("t", peer.many, send_one=peer.one, max_items=100)
        peer.gate.clear()
        first = asyncio.create_task(c.submit("a", 1))
        await asyncio.sleep(0.01)  # the first request is in flight and held
        later = [asyncio.create_task(c.submit("a", i)) for i in range(2, 12)]
        await asyncio.sleep(0.01)
        peer.gate.set()
        assert await first == 10 and [await t for t in later] == [i * 10 for i in range(2, 12)]
        assert [r[2] for r in peer.requests] == [[1], list(range(2, 12))]
    run(main())


def test_requests_are_bounded_by_items_and_bytes():
    async def main():
        peer = Peer()
        c = Coalescer("t", peer.many, max_items=4, max_bytes=100, size_of=lambda i: i)
        await asyncio.gather(*(c.submit("a", 1) for _ in range(10)))
        assert [len(r[2]) for r in peer.requests] == [4, 4, 2]
        peer.requests.clear()
        # 60 + 60 exceed 100 bytes; one item over the bound still goes, alone
        await asyncio.gather(c.submit("a", 60), c.submit("a", 60), c.submit("a", 500), c.submit("a", 30))
        assert [r[2] for r in peer.requests] == [[60], [60], [500], [30]]
    run(main())


def test_each_call_gets_its_own_outcome_and_a_failed_request_reaches_all():
    async def main():
        peer = Peer()
        c = Coalescer("t", peer.many, send_one=peer.one, max_items=100)
        results = await asyncio.gather(c.submit("a", 3), c.submit("a", -1), c.submit("a", 4), return_exceptions=True)
        assert results[0] == 30 and results[2] == 40
        assert isinstance(results[1], NotFound) and str(results[1]) == "no -1"
        alone = await asyncio.gather(c.submit("a", -2), return_exceptions=True)
        assert isinstance(alone[0], NotFound)  # the same class alone as in a batch
        peer.fail_with = Unavailable("peer down")
        results = await asyncio.gather(*(c.submit("a", i) for i in range(5)), return_exceptions=True)
        assert all(isinstance(r, Unavailable) for r in results)
    run(main())


def test_cancelling_the_drain_fails_every_waiter_and_a_cancelled_caller_is_dropped():
    async def main():
        peer = Peer()
        c = Coalescer("t", peer.many, send_one=peer.one, max_items=100)
        peer.gate.clear()
        held = asyncio.create_task(c.submit("a", 1))
        await asyncio.sleep(0.01)
        waiting = [asyncio.create_task(c.submit("a", i)) for i in (2, 3)]
        gone = asyncio.create_task(c.submit("a", 4))
        await asyncio.sleep(0.01)
        gone.cancel()
        await asyncio.sleep(0)
        await c.aclose()  # shutdown: the in-flight request and the queue are abandoned
        for t in (held, *waiting):
            with pytest.raises(Unavailable):
                await t
        assert gone.cancelled()
        assert [r[2] for r in peer.requests] == [[1]]  # nothing more was sent
        # a coalescer whose drain was cancelled still serves new calls
        peer.gate.set()
        assert await c.submit("a", 5) == 50
    run(main())


def test_waiting_calls_are_bounded():
    async def main():
        peer = Peer()
        c = Coalescer("t", peer.many, send_one=peer.one, max_items=100, max_waiting=3)
        peer.gate.clear()
        tasks = [asyncio.create_task(c.submit("a", i)) for i in range(6)]
        await asyncio.sleep(0.02)
        # three slots: the three calls admitted share the first (held) request; the rest wait for a slot
        assert [r[2] for r in peer.requests] == [[0, 1, 2]]
        peer.gate.set()
        assert [await t for t in tasks] == [i * 10 for i in range(6)]
        assert [r[2] for r in peer.requests] == [[0, 1, 2], [3, 4, 5]]
    run(main())
