"""What the engines take and give back: the contract between TalkerService and the engines.

Plain data only (no FastAPI, torch or ctypes here): emotions and stage names, the stop callback, the
catalogue entries (voices, avatars), the outputs, the exceptions an engine raises, and the protocol the
pipeline fulfils for the service (PipelineLike)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # annotations only: these modules import this one
    from talker.accelerators import EngineDevice
    from talker.talk_stream import TalkStream
    from talker.tts import SpeechStream

EMOTIONS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "surprised")
# Pipeline stages: the keys of every `timings` dict and the `stage` label of the stage metrics.
STAGE_TTS, STAGE_ANIMATE, STAGE_ENCODE = "tts", "animate", "encode"
STAGES: tuple[str, ...] = (STAGE_TTS, STAGE_ANIMATE, STAGE_ENCODE)
# Conversation stages (issue 11): before TTS, not part of a synthesis `timings` dict; the same `stage` label.
STAGE_ASR, STAGE_LLM = "asr", "llm"
CHAT_STAGES: tuple[str, ...] = (STAGE_ASR, STAGE_LLM)

# Engines poll this between chunks of work; True means the caller gave up (timeout), stop early.
ShouldStop = Callable[[], bool]


class Cancelled(Exception):
    """Raised by an engine that stopped because should_stop() returned True."""


class UnknownVoice(ValueError):
    pass


class UnknownAvatar(ValueError):
    pass


@dataclass(frozen=True)
class VoiceInfo:
    id: str  # e.g. "en-us", "cmn", "piper:en_US-joe-medium"
    engine: str  # "espeak" | "piper"
    language: str  # BCP-47-ish, e.g. "en-US", "zh-CN"
    name: str  # human readable


@dataclass(frozen=True)
class AvatarInfo:
    id: str
    name: str
    width: int
    height: int


@dataclass
class SpeechOutput:
    wav: bytes  # complete RIFF/WAVE file, 16-bit PCM mono
    sample_rate: int
    audio_seconds: float
    engine: str  # engine that produced it ("espeak" | "piper"): a metric label
    characters: int
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds (STAGE_TTS)
    truncated: bool = False  # cut at TALKER_MAX_AUDIO_SECONDS


@dataclass
class TalkOutput:
    mp4: bytes  # H.264 + AAC
    audio_seconds: float
    frames: int
    engine: str
    characters: int
    timings: dict[str, float] = field(default_factory=dict)  # every one of STAGES
    truncated: bool = False  # cut at TALKER_MAX_AUDIO_SECONDS


class Catalogue(Protocol):
    """The voices and avatars there are: what request validation and the OpenAI name mapping need."""

    default_engine: str

    def voices(self) -> list[VoiceInfo]: ...
    def avatars(self) -> list[AvatarInfo]: ...
    def has_voice(self, voice_id: str) -> bool: ...
    def has_avatar(self, avatar_id: str) -> bool: ...
    def engine_of(self, voice_id: str | None) -> str: ...
    def default_voice_of(self, engine: str) -> str | None: ...


class PipelineLike(Catalogue, Protocol):
    """What TalkerService needs from talker.pipeline.Pipeline (tests hand it stand-ins of the engines)."""

    device: str

    def load(self) -> dict[str, float]: ...  # also warms every engine up (first-call costs paid here)
    def engine_devices(self) -> list[EngineDevice]: ...  # what each engine really runs on, after load
    def synthesize(
        self, text: str, *, voice: str | None = ..., emotion: str = ..., speed: float = ..., should_stop: ShouldStop,
        max_seconds: float | None = ...,
    ) -> SpeechOutput: ...
    def synthesize_quick(
        self, text: str, *, voice: str | None = ..., emotion: str = ..., speed: float = ...,
        max_seconds: float | None = ...,
    ) -> SpeechOutput | None: ...  # None: not sure to be quick, call synthesize() in a worker thread
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
