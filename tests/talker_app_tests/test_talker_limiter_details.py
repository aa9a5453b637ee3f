"""The limiter's smaller promises, each pinned so a one-line change fails a test (see `make mutation`):
the Retry-After hint and its running mean of job durations, deadlines already spent, the worker threads'
names, shutdown not waiting for a stuck job, no "exception never retrieved" noise, and quick jobs done on the
quick thread inside their slot, which goes back exactly once whenever their caller leaves."""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import threading
import time
import types
import weakref
from collections.abc import Callable

import pytest
import talker.limiter as limiter_module
from talker.limiter import Overloaded, QueueTimeout, RunTimeout, SynthesisLimiter


async def poll_async(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def fill(limiter: SynthesisLimiter, gate: threading.Event, running: int, waiting: int) -> list[asyncio.Task]:
    """`running` jobs blocked on `gate` in their slots and `waiting` requests queued behind them."""

    def blocked(stop: threading.Event) -> str:
        gate.wait(10)
        return "done"

    tasks = [asyncio.create_task(limiter.run(blocked, 30)) for _ in range(running + waiting)]
    await poll_async(lambda: limiter.active == running and limiter.waiting == waiting)
    return tasks


def test_talker_limiter_retry_after_is_backlog_times_mean_job_over_slots_within_1_to_60() -> None:
    async def scenario() -> None:
        limiter = SynthesisLimiter(max_concurrency=2, max_queue=3)
        assert limiter.retry_after_s() == 1  # nothing ahead: the floor, not 0
        gate = threading.Event()
        tasks = await fill(limiter, gate, running=2, waiting=3)
        assert limiter.active == 2  # every start counted, not just "some"
        assert limiter.retry_after_s() == 3  # ceil(1.0 s mean * (2 + 3) / 2 slots)
        with pytest.raises(Overloaded) as refused:
            await limiter.run(lambda stop: None, 5)
        assert refused.value.retry_after_s == 3
        assert str(refused.value) == "all synthesis slots and queue places are taken"
        gate.set()
        assert await asyncio.gather(*tasks) == ["done"] * 5
        limiter.shutdown()

        big = SynthesisLimiter(max_concurrency=1, max_queue=100)
        gate = threading.Event()
        tasks = await fill(big, gate, running=1, waiting=70)
        assert big.retry_after_s() == 60  # ceil(71) capped at a minute
        gate.set()
        await asyncio.gather(*tasks)
        big.shutdown()

    asyncio.run(scenario())


def test_talker_limiter_mean_job_duration_is_a_0_8_0_2_running_mean(monkeypatch: pytest.MonkeyPatch) -> None:
    # The limiter's clock, scripted: job 1 runs 3 s (0 -> 3), job 2 runs 0.5 s (10 -> 10.5), then time stands.
    ticks = itertools.chain([0.0, 3.0, 10.0, 10.5], itertools.repeat(20.0))
    monkeypatch.setattr(limiter_module, "time", types.SimpleNamespace(monotonic=lambda: next(ticks)))

    async def scenario() -> None:
        limiter = SynthesisLimiter(max_concurrency=1, max_queue=20)
        for _ in range(2):
            await limiter.run(lambda stop: None, 5)
        await poll_async(lambda: limiter.active == 0)
        gate = threading.Event()
        tasks = await fill(limiter, gate, running=1, waiting=9)
        # mean: 1.0 -> 0.8 * 1.0 + 0.2 * 3 = 1.4 -> 0.8 * 1.4 + 0.2 * 0.5 = 1.22; backlog 10 on 1 slot
        assert limiter.retry_after_s() == 13
        gate.set()
        await asyncio.gather(*tasks)
        limiter.shutdown()

    asyncio.run(scenario())


def test_talker_limiter_quick_job_runs_on_the_quick_thread_inside_its_slot_else_the_job_runs_in_a_worker() -> None:
    async def scenario() -> None:
        limiter = SynthesisLimiter(max_concurrency=1, max_queue=1)
        seen: list[tuple[str, int]] = []

        def quick(answer: str | None) -> Callable[[], str | None]:
            def run() -> str | None:
                seen.append((threading.current_thread().name, limiter.active))
                return answer
            return run

        def job(stop: threading.Event) -> str:
            return f"job in {threading.current_thread().name}"

        assert await limiter.run(job, 5, quick=quick("quick answer")) == "quick answer"
        assert seen == [("talker-quick", 1)]  # on the quick thread (not the loop's), holding the one slot
        assert limiter.active == 0  # given back as the answer came: no worker thread to wait for

        answer = await limiter.run(job, 5, quick=quick(None))  # could not be quick: the worker does it
        assert answer.startswith("job in talker-synth_")
        await poll_async(lambda: limiter.active == 0)

        def failing() -> str | None:
            raise ValueError("no such voice")

        with pytest.raises(ValueError):
            await limiter.run(job, 5, quick=failing)
        assert limiter.active == 0

        gate = threading.Event()
        tasks = await fill(limiter, gate, running=1, waiting=0)  # a quick job waits for its slot like any other
        seen.clear()
        queued = asyncio.create_task(limiter.run(job, 5, quick=quick("after the slot")))
        await poll_async(lambda: limiter.waiting == 1)
        assert seen == []
        gate.set()
        assert await queued == "after the slot" and seen == [("talker-quick", 1)]
        await asyncio.gather(*tasks)
        limiter.shutdown()

    asyncio.run(scenario())


def test_talker_limiter_quick_job_whose_caller_left_gives_its_slot_back_once_it_has_returned() -> None:
    async def scenario() -> None:
        limiter = SynthesisLimiter(max_concurrency=1, max_queue=1)
        jobs: list[str] = []

        def job(stop: threading.Event) -> str:
            jobs.append("job")
            return "job"

        for answer in ("an answer nobody wants", None):  # None: the job it asks for must not run either
            gate, started = threading.Event(), threading.Event()

            def quick(answer: str | None = answer, gate: threading.Event = gate,
                      started: threading.Event = started) -> str | None:
                started.set()
                gate.wait(10)
                return answer

            caller = asyncio.create_task(limiter.run(job, 5, quick=quick))
            await poll_async(started.is_set)
            caller.cancel()
            with pytest.raises(asyncio.CancelledError):
                await caller
            assert limiter.active == 1  # quick() still runs in the slot: not given back yet
            gate.set()
            await poll_async(lambda: limiter.active == 0)
        assert jobs == []
        assert await limiter.run(job, 5) == "job" and limiter.active == 0  # given back once: one slot, not two
        limiter.shutdown()

    asyncio.run(scenario())


@pytest.mark.parametrize("outcome", ["answer", "none", "error"])
def test_talker_limiter_quick_job_caller_cancelled_after_it_returned_gives_the_slot_back(
    outcome: str, caplog: pytest.LogCaptureFixture,
) -> None:
    # The cancel lands after quick() has returned (its answer is set) but before the caller resumed.
    async def scenario() -> None:
        limiter = SynthesisLimiter(max_concurrency=1, max_queue=1)
        loop = asyncio.get_running_loop()
        jobs: list[str] = []
        caller: asyncio.Task[str | None] | None = None

        def quick() -> str | None:
            # Queued before quick()'s return reaches the loop, this queues the cancel behind it.
            loop.call_soon_threadsafe(lambda: loop.call_soon(caller.cancel))  # type: ignore[union-attr]
            if outcome == "error":
                raise ValueError("no such voice")
            return "answer" if outcome == "answer" else None

        caller = asyncio.create_task(limiter.run(lambda stop: jobs.append("job"), 5, quick=quick))
        with pytest.raises(asyncio.CancelledError):
            await caller
        await poll_async(lambda: limiter.active == 0)
        assert jobs == []
        assert limiter.active == 0 and limiter.waiting == 0
        limiter.shutdown()

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        asyncio.run(scenario())
        gc.collect()
    assert "never retrieved" not in caplog.text


def test_talker_limiter_quick_thread_runs_what_came_before_shutdown_then_ends_and_refuses_more() -> None:
    async def scenario() -> None:
        limiter = SynthesisLimiter(max_concurrency=2, max_queue=0)
        gate, started = threading.Event(), threading.Event()
        lane: list[threading.Thread] = []

        def first() -> str:
            lane.append(threading.current_thread())  # this limiter's quick thread (other tests' may be alive too)
            started.set()
            gate.wait(10)
            return "first"

        running = asyncio.create_task(limiter.run(lambda stop: "job", 5, quick=first))
        await poll_async(started.is_set)
        queued = asyncio.create_task(limiter.run(lambda stop: "job", 5, quick=lambda: "second"))
        await poll_async(lambda: limiter.active == 2)
        limiter.shutdown()
        gate.set()
        assert await asyncio.gather(running, queued) == ["first", "second"]  # submitted before: still answered
        with pytest.raises(RuntimeError, match="after shutdown"):
            await asyncio.wait_for(limiter.run(lambda stop: "job", 5, quick=lambda: "third"), 10)
        assert limiter.active == 0  # the refused one's slot went back
        await poll_async(lambda: not lane[0].is_alive())

    asyncio.run(scenario())


def test_talker_limiter_quick_thread_keeps_nothing_of_a_finished_job() -> None:
    # A quick job's closure holds its request (text) and its answer the audio: neither may stay alive while the
    # thread waits for the next job.
    class Answer:
        pass

    class Quick:
        def __call__(self) -> Answer:
            return Answer()

    async def scenario() -> None:
        limiter = SynthesisLimiter(max_concurrency=1, max_queue=0)
        quick = Quick()
        answer = await limiter.run(lambda stop: Answer(), 5, quick=quick)
        refs = [weakref.ref(quick), weakref.ref(answer)]
        del quick, answer
        gc.collect()
        await poll_async(lambda: all(ref() is None for ref in refs))
        limiter.shutdown()

    asyncio.run(scenario())


def test_talker_limiter_quick_job_durations_count_in_the_running_mean(monkeypatch: pytest.MonkeyPatch) -> None:
    # Scripted clock: the quick job runs 2 s (0 -> 2), then time stands.
    ticks = itertools.chain([0.0, 2.0], itertools.repeat(20.0))
    monkeypatch.setattr(limiter_module, "time", types.SimpleNamespace(monotonic=lambda: next(ticks)))

    async def scenario() -> None:
        limiter = SynthesisLimiter(max_concurrency=1, max_queue=20)
        await limiter.run(lambda stop: None, 5, quick=lambda: "quick")
        gate = threading.Event()
        tasks = await fill(limiter, gate, running=1, waiting=6)
        assert limiter.retry_after_s() == 9  # mean 0.8 * 1.0 + 0.2 * 2 = 1.2; ceil(1.2 * backlog 7 on 1 slot)
        gate.set()
        await asyncio.gather(*tasks)
        limiter.shutdown()

    asyncio.run(scenario())


def test_talker_limiter_spent_deadlines_end_at_once_not_after_a_second() -> None:
    async def scenario() -> None:
        limiter = SynthesisLimiter(max_concurrency=1, max_queue=5)
        gate = threading.Event()
        tasks = await fill(limiter, gate, running=1, waiting=0)
        started = time.monotonic()
        with pytest.raises(QueueTimeout):
            await limiter.run(lambda stop: None, 0.0)
        assert time.monotonic() - started < 0.5
        gate.set()
        await asyncio.gather(*tasks)

        started = time.monotonic()
        with pytest.raises(RunTimeout):
            await limiter.run(lambda stop: stop.wait(10), 0.2)
        assert time.monotonic() - started < 0.8
        limiter.shutdown()

    asyncio.run(scenario())


def test_talker_limiter_jobs_run_in_named_worker_threads() -> None:
    async def scenario() -> str:
        limiter = SynthesisLimiter(max_concurrency=2, max_queue=0)
        name = await limiter.run(lambda stop: threading.current_thread().name, 5)
        limiter.shutdown()
        return name

    assert asyncio.run(scenario()).startswith("talker-synth_")  # what py-spy and thread dumps show


def test_talker_limiter_shutdown_does_not_wait_for_a_stuck_job() -> None:
    gate = threading.Event()

    async def scenario() -> float:
        limiter = SynthesisLimiter(max_concurrency=1, max_queue=0)
        task = asyncio.create_task(limiter.run(lambda stop: gate.wait(10), 30))
        await poll_async(lambda: limiter.active == 1)
        started = time.monotonic()
        limiter.shutdown()
        elapsed = time.monotonic() - started
        gate.set()
        await task
        return elapsed

    assert asyncio.run(scenario()) < 1.0


def test_talker_limiter_failure_after_the_deadline_is_not_logged_as_never_retrieved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="asyncio")

    def fails_late(stop: threading.Event) -> None:
        stop.wait(10)
        raise RuntimeError("engine failed while stopping")

    async def scenario() -> None:
        limiter = SynthesisLimiter(max_concurrency=1, max_queue=0)
        with pytest.raises(RunTimeout):
            await limiter.run(fails_late, 0.1)
        await poll_async(lambda: limiter.active == 0)
        await asyncio.sleep(0.05)  # let the done callbacks of the failed job's future run
        limiter.shutdown()

    asyncio.run(scenario())
    gc.collect()
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []
