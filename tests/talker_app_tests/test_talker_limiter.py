"""The slot limiter on its own, with real threads: FIFO hand-over, 429/503/504 outcomes, slots freed, and a
slot held across several jobs (a chat turn).

Standard library only (no pytest import), so the same module also runs as a script under every Python
the service may meet: `python3.12 tests/talker_app_tests/test_talker_limiter.py` (PYTHONPATH=services/talker).
test_talker_limiter_pythons.py does exactly that for 3.12 and 3.13, whose asyncio.wait_for differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator

from talker.limiter import Overloaded, QueueTimeout, RunTimeout, SynthesisLimiter


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def poll_async(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


@contextlib.contextmanager
def raises(expected: type[BaseException]) -> Iterator[list[BaseException]]:
    """pytest.raises without pytest: the caught exception ends up in the yielded list."""
    caught: list[BaseException] = []
    try:
        yield caught
    except expected as exc:
        caught.append(exc)
    else:
        raise AssertionError(f"{expected.__name__} was not raised")


def block_loop_until(loop: asyncio.AbstractEventLoop, when: float) -> None:
    """Keep the event loop thread busy (no await) until loop.time() has passed `when`.

    This is what a long synchronous stretch on the loop does in production (a big JSON body, a GC pause):
    timers and thread callbacks that fall due meanwhile all run in the same loop turn afterwards."""
    pause = threading.Event()
    while loop.time() <= when:
        pause.wait(max(0.001, when - loop.time()))


def flush_worker(limiter: SynthesisLimiter) -> None:
    """Return once the limiter's (single) worker thread has run the previous job's done-callbacks.

    With one worker the executor runs work items one after the other, and a job's done-callbacks (the
    limiter's call_soon_threadsafe hand-over) run inside that item, so an empty item queued behind it
    finishes only after them. White-box on purpose: it makes the race below deterministic."""
    assert limiter.max_concurrency == 1
    limiter._executor.submit(lambda: None).result(timeout=5)


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
        with raises(Overloaded) as refused:
            await limiter.run(job("d"), timeout_s=10)
        assert refused[0].retry_after_s >= 1  # type: ignore[attr-defined]
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
        with raises(QueueTimeout):
            await limiter.run(lambda stop: None, timeout_s=0.1)
        assert limiter.waiting == 0
        with raises(RunTimeout):
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


def test_talker_limiter_slot_handed_over_as_the_queue_deadline_passes_is_not_lost() -> None:
    """The running job ends while the loop is busy, and the queued request's deadline passes in that window:
    the slot hand-over and the deadline are then processed in the same loop turn. From Python 3.12,
    asyncio.wait_for raises TimeoutError even though the waiter was just granted the slot; a limiter that
    only maps that to QueueTimeout loses the slot for good (capacity 0 while /readyz stays green)."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        limiter = SynthesisLimiter(max_concurrency=1, max_queue=1)
        finish = threading.Event()
        ran_late: list[str] = []
        holder = asyncio.create_task(limiter.run(lambda stop: finish.wait(5), timeout_s=10))
        await asyncio.sleep(0)
        queued = asyncio.create_task(limiter.run(lambda stop: ran_late.append("ran") or "late", timeout_s=0.05))
        await asyncio.sleep(0)
        queued_deadline = loop.time() + 0.05  # not earlier than the one the queued request computed
        assert (limiter.active, limiter.waiting) == (1, 1)

        finish.set()  # from here on the loop stays busy until the queued deadline has passed
        flush_worker(limiter)  # the job has ended and its slot hand-over sits in the loop's queue
        block_loop_until(loop, queued_deadline)

        # Granted at (or after) its deadline: the request timed out in the queue, and the slot passes on.
        with raises(QueueTimeout):
            await queued
        assert await holder is True
        await poll_async(lambda: limiter.active == 0, timeout=5, what="the handed-over slot to come back")
        assert (limiter.active, limiter.waiting) == (0, 0)
        assert ran_late == [], "a request past its deadline must not start its job"
        assert await limiter.run(lambda stop: "next", timeout_s=1) == "next"
        limiter.shutdown()

    run(scenario())


def test_talker_limiter_job_finishing_as_the_run_deadline_passes_returns_its_result() -> None:
    """Same race for a running job: the result arrived in the loop turn the deadline passed. It is answered,
    not thrown away as a 504 (which Python >= 3.12's wait_for alone would do)."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        limiter = SynthesisLimiter(max_concurrency=1, max_queue=1)
        finish = threading.Event()
        started = threading.Event()
        stop_events: list[threading.Event] = []

        def job(stop: threading.Event) -> str:
            stop_events.append(stop)
            started.set()
            finish.wait(5)
            return "done"

        task = asyncio.create_task(limiter.run(job, timeout_s=0.05))
        await asyncio.sleep(0)  # the task took the slot, submitted the job and now awaits it
        deadline = loop.time() + 0.05
        # No await from here on: the deadline timer cannot fire before the loop is free again.
        assert started.wait(5), "the job did not start"
        finish.set()
        flush_worker(limiter)
        block_loop_until(loop, deadline)
        assert await task == "done"
        assert not stop_events[0].is_set()
        await poll_async(lambda: limiter.active == 0, timeout=5, what="the slot to come back")
        limiter.shutdown()

    run(scenario())


def test_talker_limiter_held_slot_runs_jobs_in_turn_and_goes_back_exactly_once() -> None:
    async def scenario() -> None:
        gauges: list[tuple[int, int]] = []
        limiter = SynthesisLimiter(max_concurrency=1, max_queue=0, on_change=lambda a, w: gauges.append((a, w)))
        slot = await limiter.hold(queue_timeout_s=1)
        assert limiter.active == 1 and gauges[-1] == (1, 0)
        threads: list[str] = []
        for n in range(3):  # one job after another in the same slot, never refused, never queued
            assert await slot.run(lambda stop, n=n: threads.append(threading.current_thread().name) or n,
                                  timeout_s=5) == n
            assert limiter.active == 1
        assert all(name.startswith("talker-synth") for name in threads)
        with raises(Overloaded):  # the held slot is taken for everyone else, between its jobs too
            await limiter.run(lambda stop: None, timeout_s=1)
        with raises(Overloaded):
            await limiter.hold(queue_timeout_s=1)
        slot.release()
        slot.release()
        await slot.close(wait_s=1)
        assert (limiter.active, limiter.waiting) == (0, 0) and slot.returned
        with raises(RuntimeError):
            await slot.run(lambda stop: None, timeout_s=1)
        assert await limiter.run(lambda stop: "free", timeout_s=1) == "free"
        await poll_async(lambda: limiter.active == 0, timeout=5, what="the slot to come back")
        assert min(active for active, _ in gauges) == 0  # never below zero: given back once
        limiter.shutdown()

    run(scenario())


def test_talker_limiter_held_slot_released_mid_job_goes_back_when_the_thread_returns() -> None:
    async def scenario() -> None:
        limiter = SynthesisLimiter(max_concurrency=1, max_queue=1)
        slot = await limiter.hold(queue_timeout_s=1)
        started, finish = threading.Event(), threading.Event()
        stops: list[threading.Event] = []

        def job(stop: threading.Event) -> str:
            stops.append(stop)
            started.set()
            finish.wait(5)
            return "done"

        task = asyncio.create_task(slot.run(job, timeout_s=10))
        while not started.is_set():
            await asyncio.sleep(0.01)
        queued = asyncio.create_task(limiter.hold(queue_timeout_s=10))  # the next holder waits in the queue
        await asyncio.sleep(0)
        assert (limiter.active, limiter.waiting) == (1, 1)
        task.cancel()  # the turn is cancelled (barge-in): its job is told to stop...
        with raises(asyncio.CancelledError):
            await task
        assert stops[0].is_set()
        await slot.close(wait_s=0.05)  # ...and released, but its thread has not returned yet
        assert slot.released and not slot.returned
        assert (limiter.active, limiter.waiting) == (1, 1)
        finish.set()
        nxt = await asyncio.wait_for(queued, 5)  # handed over once the thread returned
        assert slot.returned and (limiter.active, limiter.waiting) == (1, 0)
        nxt.release()
        assert (limiter.active, limiter.waiting) == (0, 0)
        limiter.shutdown()

    run(scenario())


def test_talker_limiter_held_slot_queue_deadline_and_run_deadline() -> None:
    async def scenario() -> None:
        limiter = SynthesisLimiter(max_concurrency=1, max_queue=1)
        slot = await limiter.hold(queue_timeout_s=1)
        with raises(QueueTimeout):
            await limiter.hold(queue_timeout_s=0.05)
        assert limiter.waiting == 0
        with raises(RunTimeout):  # a job in a held slot still has its own deadline, and is stopped at it
            await slot.run(lambda stop: stop.wait(5), timeout_s=0.05)
        assert await slot.run(lambda stop: "after", timeout_s=5) == "after"  # waits for the stopped thread
        await slot.close(wait_s=5)
        assert slot.returned and limiter.active == 0
        limiter.shutdown()

    run(scenario())


def main() -> int:
    """Run every test_* function of this module; print one line per test and exit non-zero on a failure."""
    tests = [(name, fn) for name, fn in sorted(globals().items()) if name.startswith("test_") and callable(fn)]
    failed = 0
    for name, fn in tests:
        try:
            fn()
        except Exception:
            failed += 1
            print(f"FAIL {name}")
            traceback.print_exc()
        else:
            print(f"ok {name}")
    print(f"python {sys.version.split()[0]}: {len(tests) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
