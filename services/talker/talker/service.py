"""The talker service without HTTP: loading, readiness, validation, bounded synthesis, faults, what to count.

The routes' one door: they call into this and nothing behind it (pipeline, limiter, fault injection,
settings). It calls the Pipeline (engines) and answers with results or Refusals (refusals.py), which
errors.py turns into HTTP answers. No FastAPI imports here, so the request path reads top-down:
route -> request model -> TalkerService -> Pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from talker.accelerators import EngineDevice
from talker.animator.stream_encode import MIME_TYPE as FMP4_MIME_TYPE
from talker.asr import ENGINE_POCKETSPHINX
from talker.audio_formats import MEDIA_TYPES, open_encoder, sse_delta, sse_done
from talker.chat import Conversation
from talker.credentials import KeyRing, token_matches
from talker.engine_contract import (
    EMOTIONS,
    STAGE_TTS,
    AvatarInfo,
    Cancelled,
    PipelineLike,
    SpeechOutput,
    TalkOutput,
    UnknownAvatar,
    UnknownVoice,
    VoiceInfo,
)
from talker.faults import FaultConfig, FaultInjector
from talker.limiter import HeldSlot, Job, Overloaded, QueueTimeout, RunTimeout, SynthesisLimiter
from talker.metrics import FAULT_KINDS, RejectReason, TalkerMetrics
from talker.refusals import Refusal, RefusalKind
from talker.settings import Settings
from talker.streaming import OpenStream, Produce, StreamSink, StreamSpec, open_stream
from talker.talk_stream import TalkStream
from talker.tts import SpeechStream
from talker.validation import RequestRules, SpeechRequest

log = logging.getLogger("talker.service")
# Retry-After of a refusal that knows no better time (engines loading, queue deadline passed).
RETRY_LATER_S = 5


class TalkerService:
    def __init__(self, settings: Settings, pipeline: PipelineLike, metrics: TalkerMetrics) -> None:
        self._settings = settings
        self._pipeline = pipeline
        self._metrics = metrics
        self.record_metrics = settings.metrics_enabled
        # SHA-256 of each key (empty: /v1 is open): compared digest to digest, so the time a comparison takes
        # says nothing about a key's length or prefix.
        self._api_keys = KeyRing(settings.api_key_list())
        self._rules = RequestRules(pipeline, max_text_chars=settings.max_text_chars,
                                   max_audio_seconds=settings.max_audio_seconds,
                                   openai_voice_map=settings.openai_voices())
        self._faults = FaultInjector()
        self._limiter = SynthesisLimiter(settings.max_concurrency, settings.max_queue, on_change=self._on_slots)
        self.state = "loading"  # loading -> ready | failed
        self.load_seconds: dict[str, float] = {}
        self.engine_devices: list[EngineDevice] = []
        self._loader: threading.Thread | None = None
        # The conversation's warm-up (warm_up_chat): off (no TALKER_LLM_BASE_URL), pending -> warming -> warm |
        # failed. /readyz waits while it is pending or warming.
        self.chat_warm_up = "pending" if settings.llm_base_url else "off"
        self._warmer: asyncio.Task[None] | None = None
        metrics.concurrency_limit.set(settings.max_concurrency)
        metrics.ready.set_function(lambda: 1.0 if self.ready else 0.0)

    # --- lifecycle -------------------------------------------------------------------------------
    def start_loading(self) -> None:
        """Load and warm up the engines in the background, so /healthz answers during the load; warm the
        conversation beside them (warm_up_chat). Called on the event loop (the app's lifespan)."""
        self._loader = threading.Thread(target=self._load, name="talker-load", daemon=True)
        self._loader.start()
        if self.chat_warm_up == "pending":
            self._warmer = asyncio.get_running_loop().create_task(self.warm_up_chat())

    async def warm_up_chat(self) -> None:
        """What the first chat turn would otherwise pay for, done at start: the openai SDK's import (~0.5 s: the
        LLM client, and the remote ASR's) and the local pocketsphinx model (~0.3 s). Only with an LLM configured
        (TALKER_LLM_BASE_URL); the model only when ASR is local (no TALKER_ASR_BASE_URL). The slow parts run in
        worker threads, in parallel with the engines' load, so readiness waits for the longer of the two, not
        their sum; /readyz waits for it so that no turn after readiness pays for it. A failure is logged and
        leaves readiness alone (synthesis still works; the first turn then meets the error itself)."""
        self.chat_warm_up = "warming"
        try:
            started = time.perf_counter()
            await asyncio.to_thread(importlib.import_module, "openai")
            chat = self.chat  # made on the loop thread, as every other use does; cheap once openai is imported
            self._metrics.model_load_seconds.labels("llm_client").set(time.perf_counter() - started)
            asr = chat.asr
            if asr.engine == ENGINE_POCKETSPHINX:
                started = time.perf_counter()
                await asyncio.to_thread(asr.load)
                self._metrics.model_load_seconds.labels(ENGINE_POCKETSPHINX).set(time.perf_counter() - started)
        except Exception:
            self.chat_warm_up = "failed"
            log.exception("conversation warm-up failed; the first chat turn will meet the problem")
            return
        self.chat_warm_up = "warm"
        log.info("conversation warm", extra={"asr_engine": asr.engine})

    def _load(self) -> None:
        started = time.monotonic()
        try:
            self.load_seconds = dict(self._pipeline.load())
            for engine, seconds in self.load_seconds.items():
                self._metrics.model_load_seconds.labels(engine).set(seconds)
            self._metrics.set_build_info(tts_engine=self._pipeline.default_engine, device=self._pipeline.device)
            self.engine_devices = self._pipeline.engine_devices()
            self._metrics.set_engine_devices(self.engine_devices)
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
                "device": self._pipeline.device,
                "load_seconds": self.load_seconds,
                "total_seconds": round(time.monotonic() - started, 3),
            },
        )

    def shutdown(self) -> None:
        self._limiter.shutdown()

    async def aclose(self) -> None:
        """At shutdown, after shutdown(): the conversation's client connections (LLM, remote ASR), if it ran."""
        if self._warmer is not None and not self._warmer.done():
            self._warmer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._warmer
        if "chat" in self.__dict__:
            await self.chat.aclose()

    # --- readiness -------------------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        return self.state == "ready"

    @property
    def ready(self) -> bool:
        return self.loaded and not self.chat_warming and not self._faults.config.not_ready

    @property
    def chat_warming(self) -> bool:
        return self.chat_warm_up in ("pending", "warming")

    def readiness(self) -> dict[str, Any]:
        status = self.state
        if self.loaded and self.chat_warming:
            status = "warming up the conversation"
        elif self.loaded and self._faults.config.not_ready:
            status = "not_ready (injected fault)"
        engines = _by_engine(self.engine_devices)
        return {
            "ready": self.ready,
            "status": status,
            "device": self._pipeline.device if self.loaded else None,
            "default_engine": self._pipeline.default_engine if self.loaded else None,
            "engines": sorted(self.load_seconds),
            "conversation": self.chat_warm_up,  # off | pending | warming | warm | failed
            "load_seconds": {k: round(v, 3) for k, v in self.load_seconds.items()},
            "concurrency_limit": self._limiter.max_concurrency,
            "queue_limit": self._limiter.max_queue,
            # What each engine really runs on: onnxruntime provider or torch device type, and whether that is
            # the CPU although a GPU was requested or available (a silent fallback made visible).
            "engine_providers": {engine: sorted({d.provider for d in group}) for engine, group in engines.items()},
            "cpu_fallback": {engine: any(d.cpu_fallback for d in group) for engine, group in engines.items()},
        }

    def admit(self) -> None:
        """Let a /v1 request in, or refuse it: the error_rate fault picked it (500), engines not loaded (503)."""
        if self._faults.should_fail():
            raise Refusal(RefusalKind.INJECTED_FAULT, "injected fault",
                          detail="error_rate fault injection is active (POST /admin/faults)")
        if not self.loaded:
            raise Refusal(RefusalKind.NOT_READY, "not ready", detail=f"engines are {self.state}",
                          retry_after_s=RETRY_LATER_S)

    # --- who may call --------------------------------------------------------------------------------
    @property
    def api_keys_required(self) -> bool:
        return bool(self._api_keys)  # False: /v1 is the open demo

    def accepts_api_key(self, given: str) -> bool:
        return self._api_keys.accepts(given)

    @property
    def admin_enabled(self) -> bool:
        return self._settings.admin_token is not None  # TALKER_ADMIN_TOKEN(_FILE)

    def accepts_admin_token(self, given: str) -> bool:
        token = self._settings.admin_token
        return token_matches(given, None if token is None else token.get_secret_value())

    # --- conversation (chat.py) ----------------------------------------------------------------------
    @functools.cached_property
    def chat(self) -> Conversation:
        """The conversation (LLM client, sessions, turns): made on first use, so synthesis-only use pays nothing."""
        return Conversation(self, self._settings, self._metrics)

    def chat_origin_allowed(self, origin: str | None, host: str | None) -> bool:
        """TALKER_CHAT_ALLOWED_ORIGINS, else the request's own host. No Origin: not a browser page, allowed."""
        if origin is None:
            return True
        allowed = self._settings.chat_allowed_origins
        if allowed is not None:
            entries = {entry.strip().rstrip("/") for entry in allowed.split(",") if entry.strip()}
            return "*" in entries or origin.rstrip("/") in entries
        _, _, origin_host = origin.partition("://")
        return host is not None and origin_host.rstrip("/").lower() == host.lower()

    # --- what there is -------------------------------------------------------------------------------
    def voices(self) -> list[VoiceInfo]:
        return self._pipeline.voices()

    def avatars(self) -> list[AvatarInfo]:
        return self._pipeline.avatars()

    @property
    def default_voice(self) -> str:
        return self._settings.default_voice

    @property
    def default_avatar(self) -> str:
        return self._settings.default_avatar

    @property
    def emotions(self) -> tuple[str, ...]:
        return EMOTIONS

    @property
    def log_text(self) -> bool:
        return self._settings.log_text  # request text in log lines (TALKER_LOG_TEXT)

    def metrics_exposition(self) -> bytes:
        return self._metrics.exposition()

    # --- faults ----------------------------------------------------------------------------------
    def fault_state(self) -> dict[str, Any]:
        config = self._faults.config
        return {"faults": config.as_dict(), "active": config.active_kinds()}

    @property
    def faults(self) -> FaultInjector:
        """The one injector /admin/faults switches; the LLM stage's client is built with it (LLMClient(faults=))."""
        return self._faults

    def set_faults(self, *, error_rate: float, extra_latency_ms: float, not_ready: bool,
                   llm_extra_latency_ms: float = 0.0, llm_error_rate: float = 0.0) -> None:
        self._faults.set(FaultConfig(error_rate, extra_latency_ms, not_ready, llm_extra_latency_ms, llm_error_rate))
        self._show_faults()

    def clear_faults(self) -> None:
        self._faults.clear()
        self._show_faults()

    def _show_faults(self) -> None:
        active = self._faults.config.active_kinds()
        for kind in FAULT_KINDS:
            self._metrics.fault_active.labels(kind).set(1.0 if active[kind] else 0.0)

    # --- validation (validation.py) ---------------------------------------------------------------
    def speech_request(self, text: str, *, voice: str | None, emotion: str, speed: float,
                       avatar: str | None = None) -> SpeechRequest:
        """A checked request of /v1/tts, /v1/talk(/stream); raises Refusal naming the first bad field."""
        return self._rules.speech_request(text, voice=voice, emotion=emotion, speed=speed, avatar=avatar)

    def openai_speech_request(self, *, model: str, text: str, voice: str, speed: float) -> SpeechRequest:
        """A checked request in OpenAI's names (openai_voices.py)."""
        return self._rules.openai_speech_request(model=model, text=text, voice=voice, speed=speed)

    # --- work (a job that is not done raises Refusal: see _refusals) ---------------------------------
    async def synthesize(self, req: SpeechRequest) -> SpeechOutput:
        def job(stop: threading.Event) -> SpeechOutput:
            self._inject_latency(stop)
            return self._pipeline.synthesize(
                req.text, voice=req.voice, emotion=req.emotion, speed=req.speed, should_stop=stop.is_set,
                max_seconds=self._settings.max_audio_seconds,
            )

        def quick() -> SpeechOutput | None:
            if self._faults.extra_latency_s > 0:
                return None  # the injected latency waits in a worker, where the deadline can stop it
            return self._pipeline.synthesize_quick(req.text, voice=req.voice, emotion=req.emotion, speed=req.speed,
                                                   max_seconds=self._settings.max_audio_seconds)

        with _refusals():
            out: SpeechOutput = await self._limiter.run(job, self._settings.request_timeout_s, quick=quick)
        self._count(out.engine, out.characters, out.audio_seconds, out.timings)
        return out

    async def talk(self, req: SpeechRequest) -> TalkOutput:
        def job(stop: threading.Event) -> TalkOutput:
            self._inject_latency(stop)
            return self._pipeline.talk(
                req.text,
                avatar=req.avatar,
                voice=req.voice,
                emotion=req.emotion,
                speed=req.speed,
                should_stop=stop.is_set,
                max_seconds=self._settings.max_audio_seconds,
            )

        with _refusals():
            out: TalkOutput = await self._run(job)
        self._count(out.engine, out.characters, out.audio_seconds, out.timings, frames=out.frames)
        return out

    async def hold_slot(self) -> HeldSlot:
        """One synthesis slot for a chat turn's jobs (its sentences' streams, `slot=`), taken once up front:
        queued like a request, refused (Refusal 429, or 503 past the queue deadline) before anything is made,
        never between sentences. The caller releases it (HeldSlot.close) when the turn ends, however it ends."""
        with _refusals():
            return await self._limiter.hold(self._settings.request_timeout_s)

    async def speech_stream(self, req: SpeechRequest, fmt: str, *, route: str, sse: bool = False,
                            slot: HeldSlot | None = None) -> OpenStream[SpeechStream]:
        """Speech encoded as `fmt` (audio_formats.FORMATS), streamed as it is synthesized.

        With sse, the audio travels in OpenAI's `speech.audio.delta` events, then `speech.audio.done`. With
        `slot` it runs in that held slot (never refused for want of one), else it takes a slot of its own."""
        spec = StreamSpec(
            kind="audio", route=route, engine=self._pipeline.engine_of(req.voice),
            media_type="text/event-stream" if sse else MEDIA_TYPES[fmt],
            buffer_bytes=self._settings.stream_buffer_bytes, write_timeout_s=self._settings.stream_write_timeout_s,
        )

        def produce(sink: StreamSink, stop: threading.Event) -> SpeechStream:
            self._inject_latency(stop)
            speech = self._pipeline.stream_speech(
                req.text, voice=req.voice, emotion=req.emotion, speed=req.speed, should_stop=stop.is_set,
                max_seconds=self._settings.max_audio_seconds,
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

        with _refusals():
            return await self._open_stream(spec, produce, on_end=self._count_stream, slot=slot)

    async def talk_stream(self, req: SpeechRequest, *, route: str, slot: HeldSlot | None = None
                          ) -> OpenStream[TalkStream]:
        """A talking-head video as fragmented MP4 (stream_encode.MIME_TYPE), sent as it is rendered (in `slot`
        when given, as speech_stream).

        The init segment waits for the first media segment, so the stream's first bytes (and
        talker_time_to_first_frame_seconds) are the first video frames, not just the codec header."""
        spec = StreamSpec(
            kind="video", route=route, engine=self._pipeline.engine_of(req.voice), media_type=FMP4_MIME_TYPE,
            buffer_bytes=self._settings.stream_buffer_bytes, write_timeout_s=self._settings.stream_write_timeout_s,
        )

        def produce(sink: StreamSink, stop: threading.Event) -> TalkStream:
            self._inject_latency(stop)
            talk = self._pipeline.talk_stream(
                req.text, avatar=req.avatar, voice=req.voice, emotion=req.emotion, speed=req.speed,
                should_stop=stop.is_set, max_seconds=self._settings.max_audio_seconds,
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

        with _refusals():
            return await self._open_stream(spec, produce, on_end=self._count_talk_stream, slot=slot)

    def _count_talk_stream(self, stream: OpenStream[TalkStream]) -> None:
        talk = stream.result()
        if talk is None:
            return
        self._count(talk.engine, talk.characters, talk.audio_seconds, talk.timings, frames=talk.frames)
        if talk.truncated:
            self.count_truncated(stream.spec.route)

    async def _open_stream(self, spec: StreamSpec, produce: Produce[Any],
                           on_end: Callable[[OpenStream[Any]], None] = lambda _: None,
                           slot: HeldSlot | None = None) -> OpenStream[Any]:
        """Run produce(sink, stop) in a slot (its own, or `slot`) and return the stream once its first bytes
        exist (streaming.py). Raises like the other jobs (Overloaded, QueueTimeout, RunTimeout, ...) while no
        byte exists yet; in a held slot only RunTimeout and the engine's own errors."""
        metrics = self._metrics if self.record_metrics else None
        if slot is None:
            return await open_stream(spec, produce, self._run, metrics, on_end)
        timeout_s = self._settings.request_timeout_s
        return await open_stream(spec, produce, lambda job: slot.run(job, timeout_s), metrics, on_end)

    def _count_stream(self, stream: OpenStream[SpeechStream]) -> None:
        speech = stream.result()
        if speech is None:
            return
        self._count(speech.engine, speech.characters, speech.audio_seconds, {STAGE_TTS: speech.tts_seconds})
        if speech.truncated:
            self.count_truncated(stream.spec.route)

    # --- counting -------------------------------------------------------------------------------------
    def count_truncated(self, route: str) -> None:
        if self.record_metrics:
            self._metrics.audio_truncated.labels(route).inc()

    def count_rejection(self, reason: RejectReason) -> None:
        """The one place a refused request is counted (talker_requests_rejected_total{reason})."""
        if self.record_metrics:
            self._metrics.rejected.labels(reason.value).inc()

    async def _run(self, job: Job[Any]) -> Any:
        return await self._limiter.run(job, self._settings.request_timeout_s)

    def _inject_latency(self, stop: threading.Event) -> None:
        delay = self._faults.extra_latency_s
        # Waiting on the stop event (not sleeping) lets a timed-out request free its slot at once.
        if delay > 0 and stop.wait(delay):
            raise Cancelled()

    def _count(
        self, engine: str, characters: int, audio_seconds: float, timings: dict[str, float], frames: int = 0
    ) -> None:
        if self.record_metrics:
            self._metrics.observe_synthesis(
                engine=engine, characters=characters, audio_seconds=audio_seconds, timings=timings, frames=frames
            )

    def _on_slots(self, active: int, waiting: int) -> None:
        self._metrics.active_sessions.set(active)
        self._metrics.queue_depth.set(waiting)



@contextlib.contextmanager
def _refusals() -> Iterator[None]:
    """The limiter's and the engines' ways of not finishing a job, as the service's Refusals."""
    try:
        yield
    except Overloaded as exc:
        raise Refusal(RefusalKind.OVERLOADED, "overloaded",
                      detail="all synthesis slots and queue places are taken; retry later",
                      retry_after_s=exc.retry_after_s) from None
    except QueueTimeout:
        raise Refusal(RefusalKind.QUEUE_TIMEOUT, "timed out waiting for a free slot",
                      detail="the request waited in the queue past its deadline", retry_after_s=RETRY_LATER_S) from None
    except (RunTimeout, Cancelled):
        raise Refusal(RefusalKind.RUN_TIMEOUT, "timed out",
                      detail="synthesis ran past TALKER_REQUEST_TIMEOUT_S and was stopped") from None
    except UnknownVoice:  # only the configured default voice gets here: named voices are checked up front
        raise Refusal(RefusalKind.INVALID, "unknown voice", field="voice") from None
    except UnknownAvatar:
        raise Refusal(RefusalKind.INVALID, "unknown avatar", field="avatar") from None


def _by_engine(devices: list[EngineDevice]) -> dict[str, list[EngineDevice]]:
    grouped: dict[str, list[EngineDevice]] = {}
    for device in devices:
        grouped.setdefault(device.engine, []).append(device)
    return grouped
