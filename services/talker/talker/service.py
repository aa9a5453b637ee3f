"""The talker service without HTTP: loading, readiness, bounded synthesis, faults and what to count.

Routes call into this; it calls the Pipeline (engines). No FastAPI imports here, so the request path
reads top-down: route -> request model -> TalkerService -> Pipeline.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from talker.faults import FaultConfig, FaultInjector
from talker.limiter import Job, SynthesisLimiter
from talker.metrics import FAULT_KINDS, TalkerMetrics
from talker.settings import Settings
from talker.types import AvatarInfo, Cancelled, ShouldStop, SpeechOutput, TalkOutput, VoiceInfo

log = logging.getLogger("talker.service")

class PipelineLike(Protocol):
    """What the service needs from talker.pipeline.Pipeline."""

    device: str
    default_engine: str

    def load(self) -> dict[str, float]: ...  # also warms every engine up (first-call costs paid here)
    def voices(self) -> list[VoiceInfo]: ...
    def avatars(self) -> list[AvatarInfo]: ...
    def has_voice(self, voice_id: str) -> bool: ...
    def has_avatar(self, avatar_id: str) -> bool: ...
    def synthesize(
        self, text: str, *, voice: str | None = ..., emotion: str = ..., speed: float = ..., should_stop: ShouldStop
    ) -> SpeechOutput: ...
    def talk(
        self,
        text: str,
        *,
        avatar: str | None = ...,
        voice: str | None = ...,
        emotion: str = ...,
        speed: float = ...,
        should_stop: ShouldStop,
    ) -> TalkOutput: ...


@dataclass(frozen=True)
class SpeechRequest:
    text: str
    voice: str | None
    emotion: str
    speed: float
    avatar: str | None = None


class TalkerService:
    def __init__(self, settings: Settings, pipeline: PipelineLike, metrics: TalkerMetrics) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.metrics = metrics
        self.record_metrics = settings.metrics_enabled
        self.faults = FaultInjector()
        self.limiter = SynthesisLimiter(settings.max_concurrency, settings.max_queue, on_change=self._on_slots)
        self.state = "loading"  # loading -> ready | failed
        self.load_seconds: dict[str, float] = {}
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
        return {
            "ready": self.ready,
            "status": status,
            "device": self.pipeline.device if self.loaded else None,
            "default_engine": self.pipeline.default_engine if self.loaded else None,
            "engines": sorted(self.load_seconds),
            "load_seconds": {k: round(v, 3) for k, v in self.load_seconds.items()},
            "concurrency_limit": self.limiter.max_concurrency,
            "queue_limit": self.limiter.max_queue,
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
    async def synthesize(self, req: SpeechRequest) -> SpeechOutput:
        def job(stop: threading.Event) -> SpeechOutput:
            self._inject_latency(stop)
            return self.pipeline.synthesize(
                req.text, voice=req.voice, emotion=req.emotion, speed=req.speed, should_stop=stop.is_set
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
            )

        out = await self._run(job)
        self._count(out.engine, out.characters, out.audio_seconds, out.timings, frames=out.frames)
        return out

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
