"""HTTP routes. Thin: validate, call TalkerService, turn its outcomes into responses."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ValidationError

from talker.animator.stream_encode import MIME_TYPE as FMP4_MIME_TYPE
from talker.engine_contract import EMOTIONS, Cancelled, SpeechOutput, TalkOutput, UnknownAvatar, UnknownVoice
from talker.errors import ApiError, invalid_input
from talker.faults import FaultConfig
from talker.limiter import Overloaded, QueueTimeout, RunTimeout
from talker.metrics import CONTENT_TYPE_LATEST
from talker.observe import request_context
from talker.schemas import FaultBody, SpeechBody, TalkBody
from talker.service import AudioTooLong, SpeechRequest, TalkerService
from talker.stream_response import StreamedResponse

STATIC_DIR = Path(__file__).parent / "static"
TALK_STREAM_ROUTE = "/v1/talk/stream"
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


async def get_service(request: Request) -> TalkerService:
    # async on purpose: FastAPI runs plain-def dependencies in a worker thread (a hop per request).
    service: TalkerService = request.app.state.service
    return service


ServiceDep = Annotated[TalkerService, Depends(get_service)]


# --- /v1: the product ------------------------------------------------------------------------------
async def require_api_key(request: Request, service: ServiceDep) -> None:
    """With TALKER_API_KEYS set, every /v1 call needs `Authorization: Bearer <one of them>` (as OpenAI's)."""
    keys = service.api_key_digests
    if not keys:
        return  # the open demo
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise ApiError(
            401, "unauthorized", detail="send Authorization: Bearer <API key> (TALKER_API_KEYS)",
            reason="unauthorized", headers={"WWW-Authenticate": "Bearer"},
        )
    candidate = hashlib.sha256(given.strip().encode()).digest()
    matched = False
    for key in keys:  # every key compared, each in constant time: timing tells nothing about which is close
        matched |= hmac.compare_digest(candidate, key)
    if not matched:
        raise ApiError(403, "forbidden", detail="unknown API key", reason="unauthorized")


async def require_loaded(service: ServiceDep) -> None:
    if not service.loaded:
        raise ApiError(503, "not ready", detail=f"engines are {service.state}", headers={"Retry-After": "5"})


async def maybe_inject_error(service: ServiceDep) -> None:
    if service.faults.should_fail():
        raise ApiError(500, "injected fault", detail="error_rate fault injection is active (POST /admin/faults)")


V1_GUARDS = [Depends(require_api_key), Depends(maybe_inject_error), Depends(require_loaded)]
v1 = APIRouter(prefix="/v1", tags=["talker"], dependencies=V1_GUARDS)


@v1.post("/tts", response_class=Response, responses={200: {"content": {"audio/wav": {}}}})
async def tts(body: SpeechBody, request: Request, service: ServiceDep) -> Response:
    """Text -> WAV (16-bit PCM mono), produced in memory."""
    req = _speech_request(body, service)
    out: SpeechOutput = await bounded(service.synthesize(req))
    _describe_result(request, service, req, out.engine, out.audio_seconds, out.timings, out.truncated)
    headers = _result_headers(out.engine, out.audio_seconds, out.timings, out.truncated)
    return Response(out.wav, media_type="audio/wav", headers=headers)


@v1.post("/talk", response_class=Response, responses={200: {"content": {"video/mp4": {}}}})
async def talk(body: TalkBody, request: Request, service: ServiceDep) -> Response:
    """Text -> talking-head MP4 (H.264 + AAC)."""
    req = _speech_request(body, service, avatar=body.avatar)
    out: TalkOutput = await bounded(service.talk(req))
    _describe_result(request, service, req, out.engine, out.audio_seconds, out.timings, out.truncated)
    headers = _result_headers(out.engine, out.audio_seconds, out.timings, out.truncated)
    headers["X-Video-Frames"] = str(out.frames)
    return Response(out.mp4, media_type="video/mp4", headers=headers)


@v1.post("/talk/stream", response_class=StreamedResponse, responses={200: {"content": {FMP4_MIME_TYPE: {}}}})
async def talk_stream(body: TalkBody, request: Request, service: ServiceDep) -> StreamedResponse:
    """Text -> talking-head fragmented MP4 (H.264 + AAC), sent fragment by fragment while it is rendered.

    The Content-Type names the codecs, as a Media Source Extensions player needs them."""
    req = _speech_request(body, service, avatar=body.avatar)
    stream = await bounded(service.talk_stream(req, route=TALK_STREAM_ROUTE))
    ctx = request_context(request)
    ctx.details.update(chars=len(req.text), emotion=req.emotion)
    if service.settings.log_text:
        ctx.details["text"] = req.text
    headers = {"Cache-Control": "no-store", "X-TTS-Engine": stream.spec.engine}
    return StreamedResponse(stream, ctx, headers=headers)


@v1.get("/voices")
async def voices(service: ServiceDep) -> dict[str, Any]:
    return {
        "voices": [vars(v) for v in service.pipeline.voices()],
        "default": service.settings.default_voice,
        "emotions": list(EMOTIONS),
    }


@v1.get("/avatars")
async def avatars(service: ServiceDep) -> dict[str, Any]:
    return {"avatars": [vars(a) for a in service.pipeline.avatars()], "default": service.settings.default_avatar}


def _speech_request(body: SpeechBody, service: TalkerService, avatar: str | None = None) -> SpeechRequest:
    check_text_length(body.text, service, field="text")
    pipeline = service.pipeline
    if body.voice is not None and not pipeline.has_voice(body.voice):
        raise unknown_value("voice", [v.id for v in pipeline.voices()])
    if avatar is not None and not pipeline.has_avatar(avatar):
        raise unknown_value("avatar", [a.id for a in pipeline.avatars()])
    req = SpeechRequest(text=body.text, voice=body.voice, emotion=body.emotion, speed=body.speed, avatar=avatar)
    check_audio_budget(req, service, field="text")
    return req


def check_text_length(text: str, service: TalkerService, *, field: str) -> None:
    limit = service.settings.max_text_chars
    if len(text) > limit:
        raise ApiError(
            422, "text too long", field=field, detail=f"at most {limit} characters, got {len(text)}",
            reason="invalid", max_chars=limit,
        )


def check_audio_budget(req: SpeechRequest, service: TalkerService, *, field: str) -> None:
    try:
        service.check_audio_budget(req)
    except AudioTooLong as exc:
        raise ApiError(
            422, "audio too long", field=field,
            detail=f"this text at this speed makes about {exc.expected_s:.0f} s of audio or more; "
                   f"at most {exc.limit_s:g} s (TALKER_MAX_AUDIO_SECONDS)",
            reason="invalid", max_audio_seconds=exc.limit_s,
        ) from None


def unknown_value(field: str, allowed: list[str]) -> ApiError:
    return ApiError(
        422, f"unknown {field}", field=field, detail=f"use one of the allowed {field} values", reason="invalid",
        allowed=allowed,
    )


async def bounded(work: Awaitable[T]) -> T:
    """Await a slot-limited job, translating its refusals into HTTP answers."""
    try:
        return await work
    except Overloaded as exc:
        raise ApiError(
            429, "overloaded", detail="all synthesis slots and queue places are taken; retry later",
            reason="overloaded", headers={"Retry-After": str(exc.retry_after_s)},
        ) from None
    except QueueTimeout:
        raise ApiError(
            503, "timed out waiting for a free slot", detail="the request waited in the queue past its deadline",
            reason="timeout", headers={"Retry-After": "5"},
        ) from None
    except (RunTimeout, Cancelled):
        raise ApiError(
            504, "timed out", detail="synthesis ran past TALKER_REQUEST_TIMEOUT_S and was stopped", reason="timeout"
        ) from None
    except UnknownVoice:
        raise ApiError(422, "unknown voice", field="voice", reason="invalid") from None
    except UnknownAvatar:
        raise ApiError(422, "unknown avatar", field="avatar", reason="invalid") from None


def _describe_result(
    request: Request, service: TalkerService, req: SpeechRequest, engine: str, audio_s: float,
    timings: dict[str, float], truncated: bool,
) -> None:
    ctx = request_context(request)
    ctx.timings = dict(timings)
    ctx.details.update(engine=engine, audio_seconds=round(audio_s, 3), chars=len(req.text), emotion=req.emotion)
    if truncated:
        ctx.details.update(truncated=True, end_reason="TALKER_MAX_AUDIO_SECONDS reached")
        service.count_truncated(request.scope["route"].path)  # the route template: a bounded label
    if service.settings.log_text:
        ctx.details["text"] = req.text


def _result_headers(engine: str, audio_s: float, timings: dict[str, float], truncated: bool) -> dict[str, str]:
    server_timing = ", ".join(f"{stage};dur={seconds * 1000:.1f}" for stage, seconds in timings.items())
    headers = {"X-Audio-Seconds": f"{audio_s:.3f}", "X-TTS-Engine": engine, "Cache-Control": "no-store"}
    if truncated:
        headers["X-Audio-Truncated"] = "true"
    if server_timing:
        headers["Server-Timing"] = server_timing
    return headers


# --- probes ----------------------------------------------------------------------------------------
probes = APIRouter(tags=["probes"])


@probes.api_route("/healthz", methods=["GET", "HEAD"])  # HEAD: load balancers probe with it
async def healthz(service: ServiceDep) -> JSONResponse:
    """The process is alive and serving HTTP (engines may still be loading).

    Only a failed engine load makes it 503: such a process can never become ready, so a supervisor
    should restart it rather than wait."""
    if service.state == "failed":
        return JSONResponse({"status": "failed", "detail": "engine load failed; see the log"}, status_code=503)
    return JSONResponse({"status": "ok"})


@probes.api_route("/readyz", methods=["GET", "HEAD"])
async def readyz(service: ServiceDep) -> JSONResponse:
    """Engines loaded and warmed up (and no not_ready fault): 200, else 503."""
    body = service.readiness()
    return JSONResponse(body, status_code=200 if body["ready"] else 503)


# --- /metrics on the API port (only when configured; see Settings.serve_metrics_on_api_port) -------
metrics_router = APIRouter(tags=["metrics"])


@metrics_router.get("/metrics", response_class=Response)
def metrics(service: ServiceDep) -> Response:
    # A plain def: FastAPI runs it in a worker thread, so slow NVML reads never stall the event loop.
    return Response(service.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


# --- /admin: fault injection -----------------------------------------------------------------------
async def require_admin(request: Request, service: ServiceDep) -> None:
    token = service.settings.admin_token
    if token is None:
        raise ApiError(404, "not found")  # disabled: look exactly like a route that does not exist
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise ApiError(
            401, "unauthorized", detail="send Authorization: Bearer <TALKER_ADMIN_TOKEN>", reason="unauthorized",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(given.strip().encode(), token.get_secret_value().encode()):
        raise ApiError(403, "forbidden", detail="wrong admin token", reason="unauthorized")


admin = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])


@admin.get("/faults")
async def get_faults(service: ServiceDep) -> dict[str, Any]:
    return _fault_state(service)


@admin.post("/faults")
async def set_faults(request: Request, service: ServiceDep) -> dict[str, Any]:
    # The body is parsed here, after the auth check, so an anonymous caller learns nothing from validation.
    body = await _parse_body(request, FaultBody)
    service.set_faults(FaultConfig(body.error_rate, body.extra_latency_ms, body.not_ready))
    return _fault_state(service)


@admin.delete("/faults")
async def clear_faults(service: ServiceDep) -> dict[str, Any]:
    service.clear_faults()
    return _fault_state(service)


def _fault_state(service: TalkerService) -> dict[str, Any]:
    config = service.faults.config
    return {"faults": config.as_dict(), "active": config.active_kinds()}


async def _parse_body(request: Request, model: type[M]) -> M:
    raw = await request.body()
    try:
        data = json.loads(raw or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        pos = getattr(exc, "pos", getattr(exc, "start", 0))
        raise invalid_input([{"type": "json_invalid", "loc": ("body", pos), "msg": "JSON decode error"}]) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_input([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None


# --- demo page -------------------------------------------------------------------------------------
demo = APIRouter(include_in_schema=False)


@demo.get("/")
async def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})
