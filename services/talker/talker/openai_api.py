"""`POST /v1/audio/speech`: OpenAI's speech endpoint, so OpenAI clients work against talker unchanged.

The body is OpenAI's; the audio is streamed (chunked) as it is synthesized, in any of OpenAI's
response formats, or as OpenAI's `speech.audio.delta`/`speech.audio.done` server-sent events.
Mapping (documented in services/talker/README.md):
- model: OpenAI's names select the default engine; "espeak" / "piper" select that engine.
- voice: a talker voice id (GET /v1/voices), or an OpenAI voice name mapped by TALKER_OPENAI_VOICE_MAP,
  else the default voice of the selected engine.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from talker.api import V1_GUARDS, ServiceDep, bounded, check_audio_budget, check_text_length, unknown_value
from talker.audio_formats import FORMATS
from talker.errors import ApiError
from talker.observe import request_context
from talker.schemas import Identifier, TrimmedText
from talker.service import SpeechRequest, TalkerService
from talker.stream_response import StreamedResponse
from talker.tts.prosody import SPEED_MAX, SPEED_MIN

ROUTE = "/v1/audio/speech"
OPENAI_MODELS: tuple[str, ...] = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
ENGINE_MODELS: tuple[str, ...] = ("espeak", "piper")
OPENAI_VOICES: tuple[str, ...] = (
    "alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse", "marin", "cedar",
)
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
        raise ApiError(
            422, "invalid speed", field="speed", reason="invalid",
            detail=f"talker supports speed {SPEED_MIN} to {SPEED_MAX} (OpenAI's range is "
                   f"{OPENAI_SPEED_RANGE[0]} to {OPENAI_SPEED_RANGE[1]})",
            supported_range=[SPEED_MIN, SPEED_MAX],
        )
    check_text_length(body.input, service, field="input")
    voice = resolve_voice(service, body.model, body.voice)
    req = SpeechRequest(text=body.input, voice=voice, emotion="neutral", speed=body.speed)
    check_audio_budget(req, service, field="input")
    stream = await bounded(service.speech_stream(req, fmt, route=ROUTE, sse=body.stream_format == "sse"))
    ctx = request_context(request)
    ctx.details.update(model=body.model, response_format=fmt, stream_format=body.stream_format)
    if service.settings.log_text:
        ctx.details["text"] = body.input
    headers = {"Cache-Control": "no-store", "X-TTS-Engine": stream.spec.engine}
    return StreamedResponse(stream, ctx, headers=headers)


def resolve_voice(service: TalkerService, model: str, voice: str) -> str:
    """The talker voice id for OpenAI's (model, voice), or a 422 naming what is allowed."""
    pipeline = service.pipeline
    loaded_engines = [e for e in ENGINE_MODELS if pipeline.default_voice_of(e) is not None]
    if model in OPENAI_MODELS:
        engine = None  # whatever engine the voice belongs to; OpenAI names get the default voice
    elif model in loaded_engines:
        engine = model
    else:
        raise unknown_value("model", [*OPENAI_MODELS, *loaded_engines])

    if pipeline.has_voice(voice):
        if engine is not None and pipeline.engine_of(voice) != engine:
            raise unknown_value("voice", _allowed_voices(service, engine))
        return voice
    name = voice.lower()
    if name in OPENAI_VOICES or name in service.openai_voice_map:
        mapped = service.openai_voice_map.get(name)
        if mapped is not None and pipeline.has_voice(mapped) and engine in (None, pipeline.engine_of(mapped)):
            return mapped
        default = pipeline.default_voice_of(engine or pipeline.default_engine)
        assert default is not None  # the engine is loaded (checked above)
        return default
    raise unknown_value("voice", _allowed_voices(service, engine))


def _allowed_voices(service: TalkerService, engine: str | None) -> list[str]:
    ids = [v.id for v in service.pipeline.voices() if engine is None or v.engine == engine]
    return ids + sorted(set(OPENAI_VOICES) | set(service.openai_voice_map))

