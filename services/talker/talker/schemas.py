"""Request bodies of the public API. Limits that depend on settings (text length) are checked in the routes."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from talker.engine_contract import EMOTIONS
from talker.tts.prosody import SPEED_MAX, SPEED_MIN

Emotion = Literal[EMOTIONS]  # type: ignore[valid-type]  # one fixed set, shared with the engines
TrimmedText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Identifier = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]


class SpeechBody(BaseModel):
    # Unknown keys are refused so a typo ("emotions") is reported instead of silently ignored.
    model_config = ConfigDict(extra="forbid")

    text: TrimmedText = Field(description="What to say; 1..TALKER_MAX_TEXT_CHARS characters after trimming.")
    voice: Identifier | None = Field(default=None, description="A voice id from GET /v1/voices.")
    emotion: Emotion = "neutral"
    # strict: JSON numbers only (lax mode would read `true` as 1.0).
    speed: float = Field(default=1.0, ge=SPEED_MIN, le=SPEED_MAX, strict=True,
                         description="Speaking rate; 1.0 is normal.")


class TalkBody(SpeechBody):
    avatar: Identifier | None = Field(default=None, description="An avatar id from GET /v1/avatars.")


class FaultBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    extra_latency_ms: float = Field(default=0.0, ge=0.0, le=600_000.0)
    not_ready: bool = False
    llm_extra_latency_ms: float = Field(default=0.0, ge=0.0, le=600_000.0)
    llm_error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
