"""Bounded concurrency with a bounded FIFO wait queue and one deadline per request.

Synthesis is CPU/GPU bound: running more jobs than slots only makes every job slower, and an
unbounded queue turns overload into timeouts for everyone. So: at most `max_concurrency` jobs run
(in a thread pool of that size, keeping the event loop free), at most `max_queue` wait, the rest
are refused at once (429). A request that outlives its deadline is answered 503 (still queued) or
504 (running); a running job is told to stop through its stop event and gives its slot back when
its thread returns, so a timed-out job never keeps the next request waiting for long.
All bookkeeping happens on the event-loop thread, so it needs no locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

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
        self._active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._avg_job_s = 1.0  # running mean of job durations, for Retry-After

    @property
    def active(self) -> int:
        return self._active

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def run(self, job: Job[T], timeout_s: float) -> T:
        """Run job(stop_event) in a slot; raises Overloaded, QueueTimeout or RunTimeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        await self._acquire(deadline)
        stop = threading.Event()
        started = time.monotonic()
        try:
            worker: Future[T] = self._executor.submit(job, stop)
        except BaseException:
            self._release()
            raise

        def job_finished(_: Future[T]) -> None:
            # The slot is freed when the thread is really done, not when the client gave up.
            self._avg_job_s = 0.8 * self._avg_job_s + 0.2 * (time.monotonic() - started)
            with contextlib.suppress(RuntimeError):  # loop already closed at shutdown
                loop.call_soon_threadsafe(self._release)

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


def _consume_exception(future: asyncio.Future[object]) -> None:
    # A job that fails after its caller timed out would otherwise log "exception never retrieved".
    if not future.cancelled():
        future.exception()
