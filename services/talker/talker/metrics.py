"""Every talker metric, defined once. Dashboards, alert rules and tests refer to these names.

Metrics live in a per-app CollectorRegistry (not the global one) so several apps can exist in one
process (tests, the benchmark) without "duplicated timeseries" errors. Label values come only from
small fixed sets: route templates, HTTP methods and status codes, STAGES, engine names, fault kinds.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from talker import __version__
from talker.accelerators import EngineDevice
from talker.engine_contract import CHAT_STAGES, STAGES
from talker.llm import LLM_OUTCOMES, LLMResult

# 5 ms .. 60 s: a cached voice list answers in ms, a long talking-head video takes tens of seconds.
# 2.0 must stay: it is the latency SLO threshold (prometheus/slo/slos.yml; tests/monitoring_tests checks).
DURATION_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
)
# Compute seconds per audio second: espeak is ~0.002, Piper ~0.06, the animator+encoder ~0.1; 1 = real time.
REALTIME_FACTOR_BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)

# Time to the first audio byte / video frame of a stream: 5 ms .. 10 s, fine where the goals are (30 ms
# espeak, 150 ms Piper, 400-500 ms first frame and the TTFA SLO threshold, prometheus/slo/slos.yml).
FIRST_OUTPUT_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0,
)


class RejectReason(StrEnum):
    """Why a request was refused: the `reason` label of talker_requests_rejected_total."""

    OVERLOADED = "overloaded"  # 429
    TIMEOUT = "timeout"  # 503/504
    INVALID = "invalid"  # 4xx input
    UNAUTHORIZED = "unauthorized"  # API key or admin token


REJECT_REASONS: tuple[str, ...] = tuple(reason.value for reason in RejectReason)

STREAM_KINDS: tuple[str, ...] = ("audio", "video")
# completed: all produced and sent; client_closed: the client went away; slow_reader: the client stopped
# reading for TALKER_STREAM_WRITE_TIMEOUT_S; timeout: TALKER_REQUEST_TIMEOUT_S passed; error: we failed.
STREAM_OUTCOMES: tuple[str, ...] = ("completed", "client_closed", "slow_reader", "timeout", "error")
FAULT_KINDS: tuple[str, ...] = ("error_rate", "extra_latency", "not_ready", "llm_extra_latency", "llm_error_rate")
ENGINES: tuple[str, ...] = ("espeak", "piper")
# An LLM's first token: 50 ms (a warm small model) .. 30 s (TALKER_LLM_TIMEOUT_S's default).
LLM_FIRST_TOKEN_BUCKETS: tuple[float, ...] = (
    0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0,
)
LLM_TOKEN_KINDS: tuple[str, ...] = ("prompt", "completion")
# A conversation turn (talker.chat): how the user spoke, and how the turn ended.
CHAT_INPUTS: tuple[str, ...] = ("text", "audio")
# completed: answered and spoken; cancelled: barge-in or the client left; refused: overloaded or not admitted;
# llm_error / asr_error / tts_error: that stage failed; invalid: the input was refused (bounds, format).
CHAT_TURN_OUTCOMES: tuple[str, ...] = (
    "completed", "cancelled", "refused", "llm_error", "asr_error", "tts_error", "invalid",
)
# Requests that matched no route share one label value, so scanners cannot blow up cardinality.
UNMATCHED_ROUTE = "unmatched"

__all__ = ["CONTENT_TYPE_LATEST", "TalkerMetrics"]


class TalkerMetrics:
    """The talker's metric objects in their own registry, plus the exposition of that registry."""

    def __init__(self, *, tts_engine: str, device: str = "unknown") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # The same process_*/python_* series the global registry would have.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)

        self.build_info = Gauge(
            "talker_build_info",
            "Always 1; labels say which version, default TTS engine and device are running.",
            ["version", "tts_engine", "device"],
            registry=r,
        )
        self._build_labels: tuple[str, str, str] | None = None
        self.set_build_info(tts_engine=tts_engine, device=device)

        self.http_requests = Counter(
            "talker_http_requests",
            "HTTP requests answered, by route template and status code.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "talker_http_request_duration_seconds",
            "Time from request received to response sent.",
            ["method", "route"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.http_in_flight = Gauge("talker_http_requests_in_flight", "HTTP requests being handled now.", registry=r)
        self.rejected = Counter(
            "talker_requests_rejected",
            "Requests refused: overloaded (429), timeout (503/504), invalid (4xx input), "
            "unauthorized (API key or admin token).",
            ["reason"],
            registry=r,
        )
        for reason in REJECT_REASONS:
            self.rejected.labels(reason)

        self.queue_depth = Gauge("talker_queue_depth", "Requests waiting for a synthesis slot.", registry=r)
        self.concurrency_limit = Gauge(
            "talker_concurrency_limit", "Synthesis slots (TALKER_MAX_CONCURRENCY).", registry=r
        )
        self.active_sessions = Gauge(
            "talker_active_sessions", "Synthesis/rendering jobs and chat turns holding a slot now.", registry=r
        )

        self.stage_duration = Histogram(
            "talker_stage_duration_seconds",
            "Compute time of one pipeline stage for one request.",
            ["stage"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.realtime_factor = Histogram(
            "talker_realtime_factor",
            "Stage compute seconds per second of audio produced (below 1 is faster than real time).",
            ["stage"],
            buckets=REALTIME_FACTOR_BUCKETS,
            registry=r,
        )
        for stage in STAGES:
            self.stage_duration.labels(stage)
            self.realtime_factor.labels(stage)

        self.time_to_first_audio = Histogram(
            "talker_time_to_first_audio_seconds",
            "Time from a streamed speech request to its first audio bytes handed to the client (queue included).",
            ["route", "engine"],
            buckets=FIRST_OUTPUT_BUCKETS,
            registry=r,
        )
        self.time_to_first_frame = Histogram(
            "talker_time_to_first_frame_seconds",
            "Time from a streamed video request to its first video fragment handed to the client.",
            ["route"],
            buckets=FIRST_OUTPUT_BUCKETS,
            registry=r,
        )
        self.streams_active = Gauge(
            "talker_streams_active", "Streamed responses being produced or sent now.", ["kind"], registry=r
        )
        self.streams_ended = Counter(
            "talker_streams_ended",
            "Streamed responses that ended, by kind and outcome.",
            ["kind", "outcome"],
            registry=r,
        )
        for kind in STREAM_KINDS:
            self.streams_active.labels(kind).set(0)
            for outcome in STREAM_OUTCOMES:
                self.streams_ended.labels(kind, outcome)
        self.audio_truncated = Counter(
            "talker_audio_truncated",
            "Requests whose audio was cut at TALKER_MAX_AUDIO_SECONDS (the text said more than that).",
            ["route"],
            registry=r,
        )

        self.audio_seconds = Counter(
            "talker_audio_seconds", "Seconds of speech synthesized.", ["engine"], registry=r
        )
        self.characters = Counter(
            "talker_synthesized_characters", "Characters of text synthesized.", ["engine"], registry=r
        )
        self.video_frames = Counter("talker_video_frames", "Video frames rendered.", registry=r)

        self.ready = Gauge("talker_ready", "1 when engines are loaded and warmed up, the conversation warm, and not "
                           "faulted.", registry=r)
        self.model_load_seconds = Gauge(
            "talker_model_load_seconds",
            "Seconds each engine (and the conversation's llm_client, pocketsphinx) took to load at startup.",
            ["engine"], registry=r,
        )
        # Which provider each engine really runs on (set once the engines are loaded; absent before).
        self.engine_info = Gauge(
            "talker_engine_info",
            "Always 1; the onnxruntime execution provider or torch device type an engine really runs on.",
            ["engine", "provider"],
            registry=r,
        )
        self.engine_cpu_fallback = Gauge(
            "talker_engine_cpu_fallback",
            "1 when a GPU was requested or available for the engine but it runs on the CPU, else 0.",
            ["engine"],
            registry=r,
        )
        self.fault_active = Gauge(
            "talker_fault_injection_active", "1 while a fault of this kind is injected.", ["kind"], registry=r
        )
        for kind in FAULT_KINDS:
            self.fault_active.labels(kind).set(0)

        # The LLM stage of a conversation (talker.llm): one observation per LLM request.
        self.llm_time_to_first_token = Histogram(
            "talker_llm_time_to_first_token_seconds",
            "Time from an LLM request sent to its first content token received.",
            buckets=LLM_FIRST_TOKEN_BUCKETS,
            registry=r,
        )
        self.llm_tokens = Counter(
            "talker_llm_tokens",
            "LLM tokens, prompt and completion, as the server's usage reports them (else content deltas).",
            ["kind"],
            registry=r,
        )
        self.llm_requests = Counter(
            "talker_llm_requests",
            "LLM requests by outcome: completed, cancelled (barge-in), timeout, connection_error, "
            "upstream_error, stream_cut.",
            ["outcome"],
            registry=r,
        )
        for kind in LLM_TOKEN_KINDS:
            self.llm_tokens.labels(kind)
        # The conversation route (/v1/chat/ws, talker.chat).
        self.chat_turns = Counter(
            "talker_chat_turns", "Conversation turns by input (text, audio) and outcome.",
            ["input", "outcome"], registry=r,
        )
        for source in CHAT_INPUTS:
            for outcome in CHAT_TURN_OUTCOMES:
                self.chat_turns.labels(source, outcome)
        self.chat_sessions_active = Gauge(
            "talker_chat_sessions_active", "Open conversation WebSockets.", registry=r,
        )
        self.chat_first_audio = Histogram(
            "talker_chat_first_audio_seconds",
            "From the end of the user's turn (text received, or spoken input ended) to the first audio byte sent.",
            buckets=(*FIRST_OUTPUT_BUCKETS, 20.0, 30.0), registry=r,
        )
        for outcome in LLM_OUTCOMES:
            self.llm_requests.labels(outcome)

    def set_build_info(self, *, tts_engine: str, device: str) -> None:
        if self._build_labels is not None:
            self.build_info.remove(*self._build_labels)
        self._build_labels = (__version__, tts_engine, device)
        self.build_info.labels(*self._build_labels).set(1)

    def set_engine_devices(self, devices: Iterable[EngineDevice]) -> None:
        self.engine_info.clear()
        self.engine_cpu_fallback.clear()
        fallback: dict[str, bool] = {}
        for device in devices:
            self.engine_info.labels(device.engine, device.provider).set(1)
            fallback[device.engine] = fallback.get(device.engine, False) or device.cpu_fallback
        for engine, on_cpu in fallback.items():
            self.engine_cpu_fallback.labels(engine).set(1.0 if on_cpu else 0.0)

    def observe_http(self, method: str, route: str, status: int, seconds: float) -> None:
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_duration.labels(method, route).observe(seconds)

    def observe_synthesis(
        self, *, engine: str, characters: int, audio_seconds: float, timings: dict[str, float], frames: int = 0
    ) -> None:
        if engine in ENGINES:
            self.audio_seconds.labels(engine).inc(audio_seconds)
            self.characters.labels(engine).inc(characters)
        if frames:
            self.video_frames.inc(frames)
        for stage, seconds in timings.items():
            if stage not in STAGES:
                continue
            self.stage_duration.labels(stage).observe(seconds)
            if audio_seconds > 0:
                self.realtime_factor.labels(stage).observe(seconds / audio_seconds)

    def observe_stage(self, stage: str, seconds: float, *, audio_seconds: float = 0.0) -> None:
        """One conversation stage (CHAT_STAGES: asr, llm) took `seconds`; for asr, `audio_seconds` of input
        gives its real-time factor. Series appear on first use (a synthesis-only talker shows none)."""
        if stage not in CHAT_STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        self.stage_duration.labels(stage).observe(seconds)
        if audio_seconds > 0:
            self.realtime_factor.labels(stage).observe(seconds / audio_seconds)

    def observe_llm_result(self, result: LLMResult) -> None:
        """Count one finished LLM request (LLMClient's on_result)."""
        if result.outcome is not None and result.outcome in LLM_OUTCOMES:
            self.llm_requests.labels(result.outcome).inc()
        if result.time_to_first_token_s is not None:
            self.llm_time_to_first_token.observe(result.time_to_first_token_s)
        if result.prompt_tokens:
            self.llm_tokens.labels("prompt").inc(result.prompt_tokens)
        if result.completion_tokens:
            self.llm_tokens.labels("completion").inc(result.completion_tokens)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
