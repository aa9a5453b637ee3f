"""Plain data passed between the HTTP layer and the engines (no FastAPI, torch or ctypes here)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

EMOTIONS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "surprised")
STAGES: tuple[str, ...] = ("tts", "animate", "encode")

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
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds ("tts")
    truncated: bool = False  # cut at TALKER_MAX_AUDIO_SECONDS


@dataclass
class TalkOutput:
    mp4: bytes  # H.264 + AAC
    audio_seconds: float
    frames: int
    engine: str
    characters: int
    timings: dict[str, float] = field(default_factory=dict)  # "tts", "animate", "encode"
    truncated: bool = False  # cut at TALKER_MAX_AUDIO_SECONDS
