"""`POST /v1/audio/speech`: OpenAI's speech endpoint, so OpenAI clients work against talker unchanged.

The body is OpenAI's; the audio is streamed (chunked) as it is synthesized, in any of OpenAI's
response formats, or as OpenAI's `speech.audio.delta`/`speech.audio.done` server-sent events.
Which talker voice speaks for OpenAI's model and voice names: openai_voices.py (documented in
services/talker/README.md).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from talker.api import V1_GUARDS, ServiceDep
from talker.audio_formats import FORMATS
from talker.observe import request_context
from talker.openai_voices import ENGINE_MODELS, OPENAI_MODELS
from talker.refusals import invalid, unknown_value
from talker.schemas import Identifier, TrimmedText
from talker.stream_response import StreamedResponse
from talker.tts.prosody import SPEED_MAX, SPEED_MIN

ROUTE = "/v1/audio/speech"
STREAM_FORMATS: tuple[str, ...] = ("audio", "sse")
OPENAI_SPEED_RANGE = (0.25, 4.0)

router = APIRouter(prefix="/v1", tags=["openai"], dependencies=V1_GUARDS)


class OpenAISpeechBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: Identifier = Field(description=f"{', '.join(OPENAI_MODELS)} (default engine) or {', '.join(ENGINE_MODELS)}.")
    input: TrimmedText = Field(description="The text to say; 1..TALKER_MAX_TEXT_CHARS characters.")
    voice: Identifier = Field(description="A voice id from GET /v1/voices or an OpenAI voice name.")
    response_format: Identifier = Field(default="mp3", description=f"One of {', '.join(FORMATS)}.")
    speed: float = Field(default=1.0, strict=True, description=f"{SPEED_MIN} to {SPEED_MAX}; 1.0 is normal.")
    instructions: str | None = Field(default=None, max_length=4096, description="Accepted; not used.")
    stream_format: Identifier = Field(default="audio", description="audio (the bytes) or sse (OpenAI's events).")


@router.post("/audio/speech", response_class=StreamedResponse,
             responses={200: {"content": {"audio/mpeg": {}, "text/event-stream": {}}}})
async def speech(body: OpenAISpeechBody, request: Request, service: ServiceDep) -> StreamedResponse:
    """Text -> speech, streamed while it is synthesized (OpenAI Audio API compatible)."""
    fmt = body.response_format.lower()
    if fmt not in FORMATS:
        raise unknown_value("response_format", list(FORMATS))
    if body.stream_format not in STREAM_FORMATS:
        raise unknown_value("stream_format", list(STREAM_FORMATS))
    if not SPEED_MIN <= body.speed <= SPEED_MAX:
        raise invalid(
            "invalid speed", field="speed",
            detail=f"talker supports speed {SPEED_MIN} to {SPEED_MAX} (OpenAI's range is "
                   f"{OPENAI_SPEED_RANGE[0]} to {OPENAI_SPEED_RANGE[1]})",
            supported_range=[SPEED_MIN, SPEED_MAX],
        )
    req = service.openai_speech_request(model=body.model, text=body.input, voice=body.voice, speed=body.speed)
    stream = await service.speech_stream(req, fmt, route=ROUTE, sse=body.stream_format == "sse")
    ctx = request_context(request)
    ctx.details.update(model=body.model, response_format=fmt, stream_format=body.stream_format)
    if service.log_text:
        ctx.details["text"] = body.input
    headers = {"Cache-Control": "no-store", "X-TTS-Engine": stream.spec.engine}
    return StreamedResponse(stream, ctx, headers=headers)
