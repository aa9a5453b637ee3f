"""Streamed responses without HTTP: a producer in a synthesis slot, a bounded buffer, and the accounting.

A stream is opened through TalkerService.open_stream(spec, produce). `produce(sink, stop)` runs in a
limiter slot (so a stream holds its slot while it produces, and overload is refused before any byte)
and pushes bytes with `sink.put(...)`; the consumer (the HTTP response) takes them with `await
stream.next()`. The buffer between them is bounded: a producer that runs ahead of its client waits,
and stops with Cancelled as soon as the stream is closed for any reason (client gone, slow reader,
deadline), so its slot is freed within one unit of work.

How each stream ended is one of STREAM_OUTCOMES (talker_streams_ended_total); the time to its first
bytes is talker_time_to_first_audio_seconds (kind "audio") or talker_time_to_first_frame_seconds
(kind "video").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from talker.engine_contract import Cancelled
from talker.metrics import STREAM_KINDS, STREAM_OUTCOMES, TalkerMetrics

log = logging.getLogger("talker.streaming")
R = TypeVar("R")


@dataclass(frozen=True)
class StreamSpec:
    kind: str  # "audio" | "video": a metric label
    route: str  # route template: a metric label
    media_type: str
    engine: str = ""  # TTS engine (label of the time-to-first-audio histogram)
    buffer_bytes: int = 256 * 1024  # produced-but-unsent bytes before the producer waits
    write_timeout_s: float = 10.0  # a client that takes nothing for this long is cut (slow_reader)
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        assert self.kind in STREAM_KINDS, self.kind


class StreamSink:
    """The producer's end of a stream's bounded buffer; put() is called from the slot's worker thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_bytes: int) -> None:
        self._loop = loop
        self._max_bytes = max_bytes
        self._cond = threading.Condition()
        self._chunks: deque[bytes] = deque()
        self._bytes = 0
        self._closed = False  # producer finished: no more data
        self._aborted = False  # consumer gone: drop everything, stop the producer
        self._consumer_waiting = False
        self._readable = asyncio.Event()
        self.stop_event: threading.Event | None = None  # the producer's stop event, once it runs
        self.aborted_at: float | None = None  # monotonic time of abort()
        self.producer_done_at: float | None = None  # monotonic time the producer's thread let go
        self._producer_done = asyncio.Event()

    @property
    def buffered_bytes(self) -> int:
        return self._bytes

    def put(self, data: bytes) -> None:
        """Queue bytes for the client; waits while the buffer is full; raises Cancelled once aborted."""
        if not data:
            return
        with self._cond:
            # One chunk larger than the whole buffer is still let through when the buffer is empty.
            while self._bytes and self._bytes + len(data) > self._max_bytes and not self._aborted:
                self._cond.wait()
            if self._aborted:
                raise Cancelled("stream closed")
            self._chunks.append(data)
            self._bytes += len(data)
            wake = self._consumer_waiting
            self._consumer_waiting = False
        if wake:
            self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # loop closed at shutdown
            self._loop.call_soon_threadsafe(self._readable.set)

    def close(self) -> None:
        """No more data (the producer is done or failed); the consumer drains what is left."""
        with self._cond:
            self._closed = True
            wake = self._consumer_waiting
            self._consumer_waiting = False
        if wake:
            self._wake()

    def abort(self) -> None:
        """Drop what is buffered and make the producer's next (or current) put() raise Cancelled."""
        with self._cond:
            if not self._aborted:
                self.aborted_at = time.monotonic()
            self._aborted = True
            self._chunks.clear()
            self._bytes = 0
            self._cond.notify_all()
        if self.stop_event is not None:
            self.stop_event.set()  # now, not a loop turn later when the cancelled job task runs again
        self._readable.set()  # only called on the loop thread

    def producer_finished(self) -> None:
        """Called by the producer's thread as it returns (its slot is freed right after)."""
        self.producer_done_at = time.monotonic()
        self.close()
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._producer_done.set)

    async def wait_producer(self, timeout_s: float) -> float | None:
        """Wait until the producer's thread has returned; seconds from abort() to then (None: not yet)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._producer_done.wait(), timeout_s)
        if self.producer_done_at is None or self.aborted_at is None:
            return None
        return max(0.0, self.producer_done_at - self.aborted_at)

    async def take(self) -> bytes | None:
        """Everything buffered now (waiting for some if empty), or None at the end."""
        while True:
            with self._cond:
                if self._chunks:
                    data = b"".join(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
                    self._chunks.clear()
                    self._bytes = 0
                    self._cond.notify_all()
                    return data
                if self._closed or self._aborted:
                    return None
                self._consumer_waiting = True
                self._readable.clear()
            await self._readable.wait()


Produce = Callable[[StreamSink, threading.Event], R]


class OpenStream(Generic[R]):
    """A stream that has its first bytes: iterate with next() until None, then close(outcome)."""

    def __init__(self, spec: StreamSpec, sink: StreamSink, job: asyncio.Task[R], metrics: TalkerMetrics | None,
                 started: float, on_end: Callable[[OpenStream[R]], None]) -> None:
        self.spec = spec
        self.sink = sink
        self.job = job
        self.started = started
        self.first_bytes_s: float | None = None
        self.bytes_sent = 0
        self.outcome: str | None = None
        self._metrics = metrics
        self._on_end = on_end
        self._first: bytes | None = None

    async def next(self) -> bytes | None:
        """The next bytes to send; None once the stream is over (see finished_outcome())."""
        if self._first is not None:
            data, self._first = self._first, None
            return data
        if self.outcome is not None:
            return None
        return await self.sink.take()

    async def finished_outcome(self) -> str:
        """How a stream whose next() returned None ended: completed, timeout or error."""
        # The producer closes the buffer as its thread returns; its task completes a loop turn later.
        await asyncio.wait([self.job])
        if self.job.cancelled():
            return "error"
        exc = self.job.exception()
        if exc is None:
            return "completed"
        return "timeout" if _is_timeout(exc) else "error"

    def close(self, outcome: str) -> None:
        """End the stream (idempotent): stop the producer, free its slot, count the outcome."""
        if self.outcome is not None:
            return
        assert outcome in STREAM_OUTCOMES, outcome
        self.outcome = outcome
        self.sink.abort()
        if not self.job.done():
            self.job.cancel()  # the limiter sets the job's stop event; the slot is freed when it returns
        if self._metrics is not None:
            self._metrics.streams_active.labels(self.spec.kind).dec()
            self._metrics.streams_ended.labels(self.spec.kind, outcome).inc()
        if outcome == "error" and self.job.done() and not self.job.cancelled() and self.job.exception():
            log.error("stream failed", exc_info=self.job.exception())
        self._on_end(self)

    def result(self) -> R | None:
        """What produce() returned, once it did (None if it failed or is still running)."""
        if self.job.done() and not self.job.cancelled() and self.job.exception() is None:
            return self.job.result()
        return None


def _is_timeout(exc: BaseException) -> bool:
    from talker.limiter import RunTimeout

    return isinstance(exc, RunTimeout)


async def open_stream(
    spec: StreamSpec,
    produce: Produce[R],
    run_in_slot: Callable[[Callable[[threading.Event], R]], Any],
    metrics: TalkerMetrics | None,
    on_end: Callable[[OpenStream[R]], None] = lambda _: None,
) -> OpenStream[R]:
    """Start produce() in a slot and wait for its first bytes.

    Everything that goes wrong before the first byte (Overloaded, QueueTimeout, RunTimeout, invalid
    input found by the engine, a failure) is raised here, so the caller can still answer with an error
    status. From the first byte on, the stream is counted as active until close()."""
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    sink = StreamSink(loop, spec.buffer_bytes)

    def job(stop: threading.Event) -> R:
        sink.stop_event = stop
        try:
            return produce(sink, stop)
        finally:
            sink.producer_finished()

    task: asyncio.Task[R] = asyncio.ensure_future(run_in_slot(job))
    task.add_done_callback(lambda _: sink.close())  # e.g. RunTimeout while the thread still winds down
    try:
        first = await sink.take()
    except BaseException:
        sink.abort()
        task.cancel()
        raise
    if first is None:  # the job ended without a byte: its exception is the answer, else an empty stream
        try:
            await task
        except BaseException:
            sink.abort()
            raise
        first = b""
    stream = OpenStream(spec, sink, task, metrics, started, on_end)
    stream.first_bytes_s = time.perf_counter() - started
    stream._first = first
    if metrics is not None:
        metrics.streams_active.labels(spec.kind).inc()
        if spec.kind == "audio":
            metrics.time_to_first_audio.labels(spec.route, spec.engine).observe(stream.first_bytes_s)
        else:
            metrics.time_to_first_frame.labels(spec.route).observe(stream.first_bytes_s)
    return stream
