"""Streaming talk: speech chunks in, fragmented MP4 segments out, while synthesis and rendering go on.

    speech chunks (samples + phoneme marks) --> mouth openness per frame --> renderer batches
        --> one ffmpeg (raw video on stdin, raw PCM on a second pipe) --> fMP4 segments

A producer thread runs the engines and feeds ffmpeg; the thread iterating a TalkStream reads ffmpeg's
output and gets each segment as soon as ffmpeg has written it. Iteration is the backpressure: a consumer
that stops reading fills ffmpeg's stdout pipe, ffmpeg stops reading frames, the producer blocks. Closing
the iterator early (client gone), should_stop() turning true (deadline) or any error stops the producer,
kills ffmpeg and joins every thread before close()/the iteration returns: nothing is left running.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from talker.animator.fmp4 import Segment
from talker.animator.mouth import StreamingOpenness
from talker.animator.renderer import MouthRenderer
from talker.animator.stream_encode import FragmentedMp4Encoder
from talker.engine_contract import STAGE_ANIMATE, STAGE_ENCODE, STAGE_TTS, STAGES, Cancelled, ShouldStop
from talker.tts import SpeechStream

# Frames rendered per renderer call once the stream runs; the first call renders what it has at once.
RENDER_BATCH = 32


@dataclass
class TalkStreamStats:
    audio_seconds: float = 0.0
    frames: int = 0
    # Seconds the producer spent in each stage: waiting for speech, computing openness + rendering,
    # and handing frames to ffmpeg (blocked writes included) until ffmpeg had written everything.
    timings: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))


def _never() -> bool:
    return False


class FirstFramePriority:
    """Streams that already show frames pause rendering while another stream makes its first frames.

    Time to first frame is what a viewer waits for; a stream that has started runs far ahead of real time
    (10-20x on one core), so a short pause costs its viewer nothing, while on a small CPU shared by many
    streams it keeps a new stream's first fragment from queueing behind the others' later ones. Each pause
    is bounded (MAX_PAUSE_S) and ends at once when the paused stream is closed. Speech streams do the same
    for their first piece (tts.FirstPiecePriority)."""

    MAX_PAUSE_S = 0.3

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._starting = 0  # streams that have not handed out their first frames yet

    def starting(self) -> None:
        with self._cond:
            self._starting += 1

    def started(self) -> None:
        with self._cond:
            self._starting -= 1
            if not self._starting:
                self._cond.notify_all()

    def let_starters_go_first(self, stopping: ShouldStop) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._starting == 0 or stopping(), timeout=self.MAX_PAUSE_S)

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


FIRST_FRAMES = FirstFramePriority()  # one per process: the streams share the CPU


class TalkStream:
    """Iterate once for the segments (init first); `stats` is complete when the iteration has ended."""

    def __init__(self, speech: SpeechStream, renderer: MouthRenderer, *, fps: int,
                 should_stop: ShouldStop = _never) -> None:
        self._speech = speech
        self._renderer = renderer
        self._sample_rate, self._fps = speech.sample_rate, fps
        self._should_stop = should_stop
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._producer: threading.Thread | None = None
        self._encoder: FragmentedMp4Encoder | None = None
        self._input_done_at: float | None = None
        self._starting = False  # counted in FIRST_FRAMES until the first frames are out
        self._starting_lock = threading.Lock()
        self._frames_out = threading.Event()
        self.stats = TalkStreamStats()

    # What the service counts and logs once the stream is over.
    @property
    def engine(self) -> str:
        return self._speech.engine

    @property
    def characters(self) -> int:
        return self._speech.characters

    @property
    def truncated(self) -> bool:
        return self._speech.truncated  # cut at TALKER_MAX_AUDIO_SECONDS

    @property
    def audio_seconds(self) -> float:
        return self.stats.audio_seconds

    @property
    def frames(self) -> int:
        return self.stats.frames

    @property
    def timings(self) -> dict[str, float]:
        return dict(self.stats.timings)

    def stopping(self) -> bool:
        return self._stop.is_set() or self._should_stop()

    def __iter__(self) -> Iterator[Segment]:
        if self._encoder is not None:
            raise RuntimeError("a TalkStream is iterated once")
        self._encoder = encoder = FragmentedMp4Encoder(size=self._renderer.size, fps=self._fps,
                                                       sample_rate=self._sample_rate)
        self._producer = threading.Thread(target=self._produce, args=(encoder,), name="talker-talk-stream",
                                          daemon=True)
        FIRST_FRAMES.starting()
        self._starting = True
        self._producer.start()
        try:
            try:
                for segment in encoder.segments():
                    if self.stopping():
                        raise Cancelled("talk stream cancelled")
                    if segment.video_frames:
                        self._first_frames_out()
                    yield segment
            except Exception:
                if self._error is not None:
                    raise self._error from None  # the producer's failure is the cause, not the cut-off output
                raise
            self._producer.join()
            if self._error is not None:
                raise self._error
            if self._input_done_at is not None:
                self.stats.timings[STAGE_ENCODE] += time.perf_counter() - self._input_done_at
        finally:
            self.close()

    def _first_frames_out(self) -> None:
        self._frames_out.set()
        with self._starting_lock:
            starting, self._starting = self._starting, False
        if starting:
            FIRST_FRAMES.started()

    def close(self) -> None:
        """Stop producing, kill ffmpeg, join the threads (idempotent)."""
        self._stop.set()
        self._first_frames_out()
        FIRST_FRAMES.wake()  # a producer pausing for other streams' first frames sees the stop now
        if self._encoder is not None:
            self._encoder.close()
        if self._producer is not None and self._producer is not threading.current_thread():
            self._producer.join()

    # --- producer thread -----------------------------------------------------------------------------
    def _produce(self, encoder: FragmentedMp4Encoder) -> None:
        mouth = StreamingOpenness(self._sample_rate, self._fps)
        timings = self.stats.timings
        samples_in = 0
        try:
            chunks = iter(self._speech)
            while True:
                t0 = time.perf_counter()
                chunk = next(chunks, None)
                timings[STAGE_TTS] += time.perf_counter() - t0
                if chunk is None:
                    break
                self._check()
                if chunk.sample_rate != self._sample_rate:
                    raise ValueError(f"speech at {chunk.sample_rate} Hz in a {self._sample_rate} Hz stream")
                samples = np.asarray(chunk.samples, dtype=np.int16)
                samples_in += len(samples)
                t0 = time.perf_counter()
                encoder.write_audio(samples)
                openness = mouth.feed(samples, chunk.phonemes)
                timings[STAGE_ANIMATE] += time.perf_counter() - t0
                self._render(encoder, openness)
            if samples_in == 0:  # e.g. punctuation only: one silent frame keeps the video valid
                silence = np.zeros(self._sample_rate // self._fps, dtype=np.int16)
                samples_in = len(silence)
                encoder.write_audio(silence)
                mouth.feed(silence)
            self._render(encoder, mouth.finish())
            self.stats.audio_seconds = samples_in / self._sample_rate
            self._input_done_at = time.perf_counter()
            encoder.finish_input()
        except BaseException as exc:  # handed to the iterating thread, which re-raises it
            # After close() every failure is just the teardown; a broken pipe means ffmpeg failed by
            # itself, and its exit status (seen by the iterating thread) says more than EPIPE.
            if not self._stop.is_set() and not isinstance(exc, BrokenPipeError):
                self._error = exc
            encoder.close()  # ends the segment stream at once, so the iterating thread sees the failure

    def _render(self, encoder: FragmentedMp4Encoder, openness: np.ndarray) -> None:
        timings = self.stats.timings
        for start in range(0, len(openness), RENDER_BATCH):
            if self._frames_out.is_set():
                FIRST_FRAMES.let_starters_go_first(self.stopping)
            self._check()
            t0 = time.perf_counter()
            frames = self._renderer.render(openness[start:start + RENDER_BATCH])
            t1 = time.perf_counter()
            encoder.write_frames(frames)
            timings[STAGE_ANIMATE] += t1 - t0
            timings[STAGE_ENCODE] += time.perf_counter() - t1
            self.stats.frames += len(frames)

    def _check(self) -> None:
        if self.stopping():
            raise Cancelled("talk stream cancelled")
