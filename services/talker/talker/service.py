"""The talker service without HTTP: loading, readiness, bounded synthesis, faults and what to count.

Routes call into this; it calls the Pipeline (engines). No FastAPI imports here, so the request path
reads top-down: route -> request model -> TalkerService -> Pipeline.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from talker.accelerators import EngineDevice
from talker.animator.stream_encode import MIME_TYPE as FMP4_MIME_TYPE
from talker.audio_formats import MEDIA_TYPES, open_encoder, sse_delta, sse_done
from talker.engine_contract import STAGE_TTS, AvatarInfo, Cancelled, ShouldStop, SpeechOutput, TalkOutput, VoiceInfo
from talker.faults import FaultConfig, FaultInjector
from talker.limiter import Job, SynthesisLimiter
from talker.metrics import FAULT_KINDS, TalkerMetrics
from talker.settings import Settings
from talker.streaming import OpenStream, Produce, StreamSink, StreamSpec, open_stream
from talker.talk_stream import TalkStream
from talker.tts import SpeechStream
from talker.tts.prosody import min_audio_seconds, prosody_for

log = logging.getLogger("talker.service")

class PipelineLike(Protocol):
    """What the service needs from talker.pipeline.Pipeline."""

    device: str
    default_engine: str

    def load(self) -> dict[str, float]: ...  # also warms every engine up (first-call costs paid here)
    def engine_devices(self) -> list[EngineDevice]: ...  # what each engine really runs on, after load
    def voices(self) -> list[VoiceInfo]: ...
    def avatars(self) -> list[AvatarInfo]: ...
    def has_voice(self, voice_id: str) -> bool: ...
    def has_avatar(self, avatar_id: str) -> bool: ...
    def engine_of(self, voice_id: str | None) -> str: ...
    def default_voice_of(self, engine: str) -> str | None: ...
    def synthesize(
        self, text: str, *, voice: str | None = ..., emotion: str = ..., speed: float = ..., should_stop: ShouldStop,
        max_seconds: float | None = ...,
    ) -> SpeechOutput: ...
    def stream_speech(
        self, text: str, *, voice: str | None = ..., emotion: str = ..., speed: float = ..., should_stop: ShouldStop,
        max_seconds: float | None = ...,
    ) -> SpeechStream: ...
    def talk(
        self,
        text: str,
        *,
        avatar: str | None = ...,
        voice: str | None = ...,
        emotion: str = ...,
        speed: float = ...,
        should_stop: ShouldStop,
        max_seconds: float | None = ...,
    ) -> TalkOutput: ...
    def talk_stream(
        self,
        text: str,
        *,
        avatar: str | None = ...,
        voice: str | None = ...,
        emotion: str = ...,
        speed: float = ...,
        should_stop: ShouldStop,
        max_seconds: float | None = ...,
    ) -> TalkStream: ...


@dataclass(frozen=True)
class SpeechRequest:
    text: str
    voice: str | None
    emotion: str
    speed: float
    avatar: str | None = None


class AudioTooLong(Exception):
    def __init__(self, expected_s: float, limit_s: float) -> None:
        super().__init__(f"about {expected_s:.0f} s of audio; at most {limit_s:g} s")
        self.expected_s = expected_s
        self.limit_s = limit_s


class TalkerService:
    def __init__(self, settings: Settings, pipeline: PipelineLike, metrics: TalkerMetrics) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.metrics = metrics
        self.record_metrics = settings.metrics_enabled
        # SHA-256 of each key (empty: /v1 is open): compared digest to digest, so the time a comparison takes
        # says nothing about a key's length or prefix.
        self.api_key_digests = [hashlib.sha256(key.encode()).digest() for key in settings.api_key_list()]
        self.openai_voice_map = settings.openai_voices()  # OpenAI voice name -> voice id
        self.faults = FaultInjector()
        self.limiter = SynthesisLimiter(settings.max_concurrency, settings.max_queue, on_change=self._on_slots)
        self.state = "loading"  # loading -> ready | failed
        self.load_seconds: dict[str, float] = {}
        self.engine_devices: list[EngineDevice] = []
        self._loader: threading.Thread | None = None
        metrics.concurrency_limit.set(settings.max_concurrency)
        metrics.ready.set_function(lambda: 1.0 if self.ready else 0.0)

    # --- lifecycle -------------------------------------------------------------------------------
    def start_loading(self) -> None:
        """Load and warm up the engines in the background, so /healthz answers during the load."""
        self._loader = threading.Thread(target=self._load, name="talker-load", daemon=True)
        self._loader.start()

    def _load(self) -> None:
        started = time.monotonic()
        try:
            self.load_seconds = dict(self.pipeline.load())
            for engine, seconds in self.load_seconds.items():
                self.metrics.model_load_seconds.labels(engine).set(seconds)
            self.metrics.set_build_info(tts_engine=self.pipeline.default_engine, device=self.pipeline.device)
            self.engine_devices = self.pipeline.engine_devices()
            self.metrics.set_engine_devices(self.engine_devices)
            for fallback in (d for d in self.engine_devices if d.cpu_fallback):
                log.warning("%s runs on the CPU although a GPU was requested or is available (%s)",
                            fallback.engine, fallback.provider)
        except Exception:
            self.state = "failed"
            log.exception("engine load failed; /readyz stays 503")
            return
        self.state = "ready"
        log.info(
            "engines ready",
            extra={
                "device": self.pipeline.device,
                "load_seconds": self.load_seconds,
                "total_seconds": round(time.monotonic() - started, 3),
            },
        )

    def shutdown(self) -> None:
        self.limiter.shutdown()

    # --- readiness -------------------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        return self.state == "ready"

    @property
    def ready(self) -> bool:
        return self.loaded and not self.faults.config.not_ready

    def readiness(self) -> dict[str, Any]:
        status = self.state
        if self.loaded and self.faults.config.not_ready:
            status = "not_ready (injected fault)"
        engines = _by_engine(self.engine_devices)
        return {
            "ready": self.ready,
            "status": status,
            "device": self.pipeline.device if self.loaded else None,
            "default_engine": self.pipeline.default_engine if self.loaded else None,
            "engines": sorted(self.load_seconds),
            "load_seconds": {k: round(v, 3) for k, v in self.load_seconds.items()},
            "concurrency_limit": self.limiter.max_concurrency,
            "queue_limit": self.limiter.max_queue,
            # What each engine really runs on: onnxruntime provider or torch device type, and whether that is
            # the CPU although a GPU was requested or available (a silent fallback made visible).
            "engine_providers": {engine: sorted({d.provider for d in group}) for engine, group in engines.items()},
            "cpu_fallback": {engine: any(d.cpu_fallback for d in group) for engine, group in engines.items()},
        }

    # --- faults ----------------------------------------------------------------------------------
    def set_faults(self, config: FaultConfig) -> None:
        self.faults.set(config)
        self._show_faults()

    def clear_faults(self) -> None:
        self.faults.clear()
        self._show_faults()

    def _show_faults(self) -> None:
        active = self.faults.config.active_kinds()
        for kind in FAULT_KINDS:
            self.metrics.fault_active.labels(kind).set(1.0 if active[kind] else 0.0)

    # --- work ------------------------------------------------------------------------------------
    def check_audio_budget(self, req: SpeechRequest) -> None:
        """Refuse up front a text that surely says more than TALKER_MAX_AUDIO_SECONDS (raises AudioTooLong)."""
        expected = min_audio_seconds(req.text, prosody_for(req.emotion, req.speed))
        if expected > self.settings.max_audio_seconds:
            raise AudioTooLong(expected, self.settings.max_audio_seconds)

    async def synthesize(self, req: SpeechRequest) -> SpeechOutput:
        def job(stop: threading.Event) -> SpeechOutput:
            self._inject_latency(stop)
            return self.pipeline.synthesize(
                req.text, voice=req.voice, emotion=req.emotion, speed=req.speed, should_stop=stop.is_set,
                max_seconds=self.settings.max_audio_seconds,
            )

        out = await self._run(job)
        self._count(out.engine, out.characters, out.audio_seconds, out.timings)
        return out

    async def talk(self, req: SpeechRequest) -> TalkOutput:
        def job(stop: threading.Event) -> TalkOutput:
            self._inject_latency(stop)
            return self.pipeline.talk(
                req.text,
                avatar=req.avatar,
                voice=req.voice,
                emotion=req.emotion,
                speed=req.speed,
                should_stop=stop.is_set,
                max_seconds=self.settings.max_audio_seconds,
            )

        out = await self._run(job)
        self._count(out.engine, out.characters, out.audio_seconds, out.timings, frames=out.frames)
        return out

    async def speech_stream(self, req: SpeechRequest, fmt: str, *, route: str, sse: bool = False
                            ) -> OpenStream[SpeechStream]:
        """Speech encoded as `fmt` (audio_formats.FORMATS), streamed as it is synthesized.

        With sse, the audio travels in OpenAI's `speech.audio.delta` events, then `speech.audio.done`."""
        spec = StreamSpec(
            kind="audio", route=route, engine=self.pipeline.engine_of(req.voice),
            media_type="text/event-stream" if sse else MEDIA_TYPES[fmt],
            buffer_bytes=self.settings.stream_buffer_bytes, write_timeout_s=self.settings.stream_write_timeout_s,
        )

        def produce(sink: StreamSink, stop: threading.Event) -> SpeechStream:
            self._inject_latency(stop)
            speech = self.pipeline.stream_speech(
                req.text, voice=req.voice, emotion=req.emotion, speed=req.speed, should_stop=stop.is_set,
                max_seconds=self.settings.max_audio_seconds,
            )
            emit = (lambda data: sink.put(sse_delta(data))) if sse else sink.put
            encoder = open_encoder(fmt, speech.sample_rate, emit)  # ffmpeg starts while the first piece is made
            try:
                for piece in speech:
                    encoder.feed(piece.samples)
                encoder.finish()
            finally:
                encoder.close()
            if sse:
                sink.put(sse_done(input_characters=len(req.text)))
            return speech

        return await self.open_stream(spec, produce, on_end=self._count_stream)

    async def talk_stream(self, req: SpeechRequest, *, route: str) -> OpenStream[TalkStream]:
        """A talking-head video as fragmented MP4 (stream_encode.MIME_TYPE), sent as it is rendered.

        The init segment waits for the first media segment, so the stream's first bytes (and
        talker_time_to_first_frame_seconds) are the first video frames, not just the codec header."""
        spec = StreamSpec(
            kind="video", route=route, engine=self.pipeline.engine_of(req.voice), media_type=FMP4_MIME_TYPE,
            buffer_bytes=self.settings.stream_buffer_bytes, write_timeout_s=self.settings.stream_write_timeout_s,
        )

        def produce(sink: StreamSink, stop: threading.Event) -> TalkStream:
            self._inject_latency(stop)
            talk = self.pipeline.talk_stream(
                req.text, avatar=req.avatar, voice=req.voice, emotion=req.emotion, speed=req.speed,
                should_stop=stop.is_set, max_seconds=self.settings.max_audio_seconds,
            )
            held, frames_sent = b"", False
            try:
                for segment in talk:
                    if not frames_sent and not segment.video_frames:
                        held += segment.data
                        continue
                    sink.put(held + segment.data)
                    held, frames_sent = b"", True
                sink.put(held)
            finally:
                talk.close()  # a put() that raised (stream closed) leaves the generator open: stop it now
            return talk

        return await self.open_stream(spec, produce, on_end=self._count_talk_stream)

    def _count_talk_stream(self, stream: OpenStream[TalkStream]) -> None:
        talk = stream.result()
        if talk is None:
            return
        self._count(talk.engine, talk.characters, talk.audio_seconds, talk.timings, frames=talk.frames)
        if talk.truncated:
            self.count_truncated(stream.spec.route)

    async def open_stream(self, spec: StreamSpec, produce: Produce[Any],
                          on_end: Callable[[OpenStream[Any]], None] = lambda _: None) -> OpenStream[Any]:
        """Run produce(sink, stop) in a slot and return the stream once its first bytes exist (streaming.py).

        Raises like the other jobs (Overloaded, QueueTimeout, RunTimeout, ...) while no byte exists yet."""
        metrics = self.metrics if self.record_metrics else None
        return await open_stream(spec, produce, self._run, metrics, on_end)

    def _count_stream(self, stream: OpenStream[SpeechStream]) -> None:
        speech = stream.result()
        if speech is None:
            return
        self._count(speech.engine, speech.characters, speech.audio_seconds, {STAGE_TTS: speech.tts_seconds})
        if speech.truncated:
            self.count_truncated(stream.spec.route)

    def count_truncated(self, route: str) -> None:
        if self.record_metrics:
            self.metrics.audio_truncated.labels(route).inc()

    async def _run(self, job: Job[Any]) -> Any:
        return await self.limiter.run(job, self.settings.request_timeout_s)

    def _inject_latency(self, stop: threading.Event) -> None:
        delay = self.faults.extra_latency_s
        # Waiting on the stop event (not sleeping) lets a timed-out request free its slot at once.
        if delay > 0 and stop.wait(delay):
            raise Cancelled()

    def _count(
        self, engine: str, characters: int, audio_seconds: float, timings: dict[str, float], frames: int = 0
    ) -> None:
        if self.record_metrics:
            self.metrics.observe_synthesis(
                engine=engine, characters=characters, audio_seconds=audio_seconds, timings=timings, frames=frames
            )

    def _on_slots(self, active: int, waiting: int) -> None:
        self.metrics.active_sessions.set(active)
        self.metrics.queue_depth.set(waiting)



def _by_engine(devices: list[EngineDevice]) -> dict[str, list[EngineDevice]]:
    grouped: dict[str, list[EngineDevice]] = {}
    for device in devices:
        grouped.setdefault(device.engine, []).append(device)
    return grouped
