"""The slot limiter on its own, with real threads: FIFO hand-over, 429/503/504 outcomes, slots freed."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest
from talker.limiter import Overloaded, QueueTimeout, RunTimeout, SynthesisLimiter


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def poll_async(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def test_talker_limiter_refuses_beyond_queue_and_hands_slots_over_in_order() -> None:
    async def scenario() -> list[str]:
        limiter = SynthesisLimiter(max_concurrency=1, max_queue=2)
        release = threading.Event()
        order: list[str] = []

        def job(name: str) -> Callable[[threading.Event], str]:
            def work(stop: threading.Event) -> str:
                release.wait(5)
                order.append(name)
                return name

            return work

        first = asyncio.create_task(limiter.run(job("a"), timeout_s=10))
        await asyncio.sleep(0)  # one loop turn: the task takes the free slot without awaiting anything
        queued = [asyncio.create_task(limiter.run(job(n), timeout_s=10)) for n in ("b", "c")]
        await asyncio.sleep(0)
        assert (limiter.active, limiter.waiting) == (1, 2)
        with pytest.raises(Overloaded) as refused:
            await limiter.run(job("d"), timeout_s=10)
        assert refused.value.retry_after_s >= 1
        release.set()
        results = await asyncio.gather(first, *queued)
        assert list(results) == ["a", "b", "c"]
        assert (limiter.active, limiter.waiting) == (0, 0)
        limiter.shutdown()
        return order

    assert run(scenario()) == ["a", "b", "c"]


def test_talker_limiter_queue_deadline_gives_503_case_and_run_deadline_stops_the_job() -> None:
    async def scenario() -> None:
        gauges: list[tuple[int, int]] = []
        limiter = SynthesisLimiter(max_concurrency=1, max_queue=1, on_change=lambda a, w: gauges.append((a, w)))
        stopped = threading.Event()

        def stubborn(stop: threading.Event) -> None:
            # Honours stop, but only after a grace period: the waiter behind it must time out first.
            stop.wait(30)
            stopped.set()
            stop_seen.wait(5)

        stop_seen = threading.Event()
        holder = asyncio.create_task(limiter.run(stubborn, timeout_s=0.3))
        await asyncio.sleep(0)
        with pytest.raises(QueueTimeout):
            await limiter.run(lambda stop: None, timeout_s=0.1)
        assert limiter.waiting == 0
        with pytest.raises(RunTimeout):
            await holder
        assert stopped.wait(5), "the running job was not told to stop"
        assert limiter.active == 1  # its thread is still finishing: the slot is not double-booked
        stop_seen.set()
        await poll_async(lambda: limiter.active == 0, timeout=5, what="the stopped job to free its slot")
        assert await limiter.run(lambda stop: "next", timeout_s=1) == "next"
        await poll_async(lambda: gauges[-1] == (0, 0), timeout=5, what="gauges back to idle")
        assert (1, 1) in gauges  # the queued request was visible as queue depth
        limiter.shutdown()

    run(scenario())
