"""What the engines take and give back: the contract between TalkerService and the engines.

Plain data only (no FastAPI, torch or ctypes here): emotions and stage names, the stop callback, the
catalogue entries (voices, avatars), the outputs, and the exceptions an engine raises."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

EMOTIONS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "surprised")
# Pipeline stages: the keys of every `timings` dict and the `stage` label of the stage metrics.
STAGE_TTS, STAGE_ANIMATE, STAGE_ENCODE = "tts", "animate", "encode"
STAGES: tuple[str, ...] = (STAGE_TTS, STAGE_ANIMATE, STAGE_ENCODE)

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
