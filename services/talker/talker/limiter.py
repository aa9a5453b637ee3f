"""Bounded concurrency with a bounded FIFO wait queue and one deadline per request.

Synthesis is CPU/GPU bound: running more jobs than slots only makes every job slower, and an
unbounded queue turns overload into timeouts for everyone. So: at most `max_concurrency` jobs run
(in a thread pool of that size, keeping the event loop free), at most `max_queue` wait, the rest
are refused at once (429). A job that can be done in a few milliseconds (`quick`) is done on the
limiter's one quick thread once it holds its slot: a hand-off of microseconds (no future chain, no
deadline timer), and while its C code runs without the GIL the event loop serves other requests' HTTP
on the other core. Done on the loop's own thread instead, the two would take turns on one core.
A request that outlives its deadline is answered 503 (still queued) or 504 (running); a running job
is told to stop through its stop event and gives its slot back when its thread returns, so a
timed-out job never keeps the next request waiting for long.
All bookkeeping happens on the event-loop thread, so it needs no locks.

A caller that produces in several jobs one after the other (a chat turn: one speech stream per sentence)
holds one slot across them with `hold()` -> HeldSlot, so it is refused (or queued) once, up front, and
never between its jobs; the slot goes back once it is released and its last job's thread has returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

Job = Callable[[threading.Event], T]  # receives the stop event; should return soon after it is set


class Overloaded(Exception):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__("all synthesis slots and queue places are taken")
        self.retry_after_s = retry_after_s


class QueueTimeout(Exception):
    """The deadline passed while the request was still waiting for a slot."""


class RunTimeout(Exception):
    """The deadline passed while the job was running; it has been told to stop."""


class SynthesisLimiter:
    def __init__(
        self,
        max_concurrency: int,
        max_queue: int,
        on_change: Callable[[int, int], None] | None = None,
    ) -> None:
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self._on_change = on_change  # (active, waiting) -> None, e.g. to set gauges
        self._executor = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="talker-synth")
        self._quick_lane = QuickLane("talker-quick")
        self._active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._avg_job_s = 1.0  # running mean of job durations, for Retry-After

    @property
    def active(self) -> int:
        return self._active

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def run(self, job: Job[T], timeout_s: float, *, quick: Callable[[], T | None] | None = None) -> T:
        """Run job(stop_event) in a slot; raises Overloaded, QueueTimeout or RunTimeout.

        quick: tried first, on the quick thread, once the slot is held; its result (not None) is the answer. None
        means it could not be quick and did nothing: then job runs in a worker thread as usual. It must take
        milliseconds at most (quick jobs queue for the one thread) and cannot be stopped, so it has no deadline
        of its own."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        await self._acquire(deadline)
        if quick is not None:
            done = await self._run_quick(quick)
            if done is not None:
                return done
        return await self._execute(job, deadline, self._release)

    async def _run_quick(self, quick: Callable[[], T | None]) -> T | None:
        """quick() on the quick thread, in the slot the caller holds. An answer (not None) or an exception gives
        the slot back; None keeps it for the job. A caller that leaves gives it back once quick() has returned."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[T | None] = loop.create_future()

        def returned(result: T | None, error: BaseException | None) -> None:  # on the loop, after quick()
            if answer.cancelled():
                self._release()  # its caller left while it ran: no answer is wanted, no job will run
            elif error is not None:
                answer.set_exception(error)
            else:
                answer.set_result(result)

        def returned_in_thread(result: T | None, error: BaseException | None) -> None:
            with contextlib.suppress(RuntimeError):  # loop already closed at shutdown
                loop.call_soon_threadsafe(returned, result, error)

        started = time.monotonic()
        try:
            self._quick_lane.submit(quick, returned_in_thread)
        except BaseException:
            self._release()
            raise
        # From here the slot is given back by this coroutine, unless it is cancelled while quick() runs.
        try:
            done = await answer
        except asyncio.CancelledError:
            if answer.done() and not answer.cancelled():  # quick() had returned: returned() kept the slot
                self._release()
            raise
        except BaseException:
            self._release()
            raise
        if done is not None:
            self._avg_job_s = 0.8 * self._avg_job_s + 0.2 * (time.monotonic() - started)
            self._release()
        return done

    async def hold(self, queue_timeout_s: float) -> HeldSlot:
        """One slot for several jobs in a row (HeldSlot.run), until HeldSlot.release(). Waits in the queue like
        run() and raises Overloaded or QueueTimeout the same way; nothing is refused once the slot is held."""
        loop = asyncio.get_running_loop()
        await self._acquire(loop.time() + queue_timeout_s)
        return HeldSlot(self)

    async def _execute(self, job: Job[T], deadline: float, thread_done: Callable[[], None]) -> T:
        """Run job(stop_event) in the executor (a slot is already held); thread_done() is called on the loop
        once the job's thread has returned (or the job could not be submitted)."""
        loop = asyncio.get_running_loop()
        stop = threading.Event()
        started = time.monotonic()
        try:
            worker: Future[T] = self._executor.submit(job, stop)
        except BaseException:
            thread_done()
            raise

        def job_finished(_: Future[T]) -> None:
            # The slot is freed when the thread is really done, not when the client gave up.
            self._avg_job_s = 0.8 * self._avg_job_s + 0.2 * (time.monotonic() - started)
            with contextlib.suppress(RuntimeError):  # loop already closed at shutdown
                loop.call_soon_threadsafe(thread_done)

        worker.add_done_callback(job_finished)
        result = asyncio.wrap_future(worker, loop=loop)
        result.add_done_callback(_consume_exception)
        try:
            return await asyncio.wait_for(asyncio.shield(result), max(0.0, deadline - loop.time()))
        except TimeoutError:
            if result.done() and not result.cancelled():
                # The job finished in the loop turn the deadline passed (Python >= 3.12's wait_for raises
                # even then): its answer is here, so give it rather than a 504.
                return result.result()
            stop.set()
            raise RunTimeout() from None
        except asyncio.CancelledError:  # client went away: nobody wants the result
            stop.set()
            raise

    def retry_after_s(self) -> int:
        """A hint for clients refused with 429: roughly when the queue ahead of them has drained."""
        backlog = self._active + len(self._waiters)
        return max(1, min(60, math.ceil(self._avg_job_s * backlog / self.max_concurrency)))

    async def _acquire(self, deadline: float) -> None:
        if self._active < self.max_concurrency and not self._waiters:
            self._active += 1
            self._changed()
            return
        if len(self._waiters) >= self.max_queue:
            raise Overloaded(self.retry_after_s())
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        self._changed()
        try:
            await asyncio.wait_for(waiter, max(0.0, deadline - loop.time()))
        except (TimeoutError, asyncio.CancelledError) as exc:
            # The slot may have been handed to us in the very loop turn the deadline passed or the client
            # left: Python 3.11's wait_for then returns, but from 3.12 it raises even though the waiter is
            # done. Either way the slot is ours now and must be passed on, or it is lost for good.
            if waiter.done() and not waiter.cancelled():
                self._release()
            if isinstance(exc, TimeoutError):
                raise QueueTimeout() from None
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
            self._changed()
        if loop.time() >= deadline:
            # Granted only as the deadline passed (3.11's wait_for returns here): the same queue timeout on
            # every Python, and no job is started that could only be stopped at once.
            self._release()
            raise QueueTimeout()

    def _release(self) -> None:
        # Hand the slot straight to the oldest live waiter (FIFO); only free it when none waits.
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._changed()
                return
        self._active -= 1
        self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self._active, len(self._waiters))

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._quick_lane.shutdown()


class HeldSlot:
    """A slot held across several jobs, run one at a time (SynthesisLimiter.hold).

    release() is idempotent; the slot returns to the limiter exactly once, when it has been released and
    no job of it is still in its thread (so the executor never runs more jobs than there are slots)."""

    def __init__(self, limiter: SynthesisLimiter) -> None:
        self._limiter = limiter
        self._running = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.released = False  # the holder let go
        self.returned = False  # the slot is back in the limiter

    async def run(self, job: Job[T], timeout_s: float) -> T:
        """Run job(stop_event) in this slot after the previous job's thread has returned; RunTimeout past
        timeout_s (the job is told to stop). Never Overloaded: the slot is already held."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self._running:  # one job at a time: the previous one's thread may still be returning
            await self._idle.wait()
        if self.released:
            raise RuntimeError("the slot has been released")
        self._running += 1
        self._idle.clear()
        return await self._limiter._execute(job, deadline, self._job_done)

    def _job_done(self) -> None:
        self._running -= 1
        if self._running == 0:
            self._idle.set()
            if self.released:
                self._give_back()

    def release(self) -> None:
        """Let go (idempotent); the slot goes back now, or when the running job's thread returns."""
        if self.released:
            return
        self.released = True
        if self._running == 0:
            self._give_back()

    async def close(self, wait_s: float) -> None:
        """release(), then wait (at most wait_s) until the slot is really back, i.e. a stopped job's thread
        has returned: the next holder then finds it free instead of being refused."""
        self.release()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), wait_s)

    def _give_back(self) -> None:
        if not self.returned:
            self.returned = True
            self._limiter._release()


class QuickLane:
    """One long-lived thread that runs submitted calls one after the other (SynthesisLimiter's quick jobs).

    The hand-off is a SimpleQueue put and, on return, the caller's own callback: no future objects per call."""

    _STOP = object()

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        threading.Thread(target=self._serve, name=name, daemon=True).start()

    def submit(self, call: Callable[[], T], returned: Callable[[T | None, BaseException | None], None]) -> None:
        """Run call() on the thread, then returned(result, None), or returned(None, exception) if it raised."""
        if self._closed:
            raise RuntimeError("cannot run quick jobs after shutdown")
        self._calls.put((call, returned))

    def shutdown(self) -> None:
        """The thread ends once the calls already submitted have run (each takes milliseconds)."""
        self._closed = True
        self._calls.put(self._STOP)

    def _serve(self) -> None:
        while (item := self._calls.get()) is not self._STOP:
            self._run(*item)
            del item  # nothing of a finished call (its closure, its answer) stays referenced while the thread waits

    @staticmethod
    def _run(call: Callable[[], T], returned: Callable[[T | None, BaseException | None], None]) -> None:
        try:
            result = call()
        except BaseException as exc:  # handed to the caller, re-raised there
            returned(None, exc)
        else:
            returned(result, None)


def _consume_exception(future: asyncio.Future[object]) -> None:
    # A job that fails after its caller timed out would otherwise log "exception never retrieved".
    if not future.cancelled():
        future.exception()
