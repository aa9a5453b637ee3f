"""HTTP routes. Thin: validate, call TalkerService, turn its outcomes into responses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ValidationError

from talker.animator.stream_encode import MIME_TYPE as FMP4_MIME_TYPE
from talker.errors import ApiError, invalid_input
from talker.metrics import CONTENT_TYPE_LATEST
from talker.observe import TRUNCATED_END_REASON, request_context
from talker.refusals import Refusal, RefusalKind
from talker.schemas import FaultBody, SpeechBody, TalkBody
from talker.service import TalkerService
from talker.stream_response import StreamedResponse
from talker.validation import SpeechRequest

STATIC_DIR = Path(__file__).parent / "static"
TALK_STREAM_ROUTE = "/v1/talk/stream"
M = TypeVar("M", bound=BaseModel)


async def get_service(request: Request) -> TalkerService:
    # async on purpose: FastAPI runs plain-def dependencies in a worker thread (a hop per request).
    service: TalkerService = request.app.state.service
    return service


ServiceDep = Annotated[TalkerService, Depends(get_service)]


def bearer_token(request: Request) -> str | None:
    """The token of `Authorization: Bearer <token>`, or None when there is none."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return None
    return given.strip()


# --- /v1: the product ------------------------------------------------------------------------------
async def require_api_key(request: Request, service: ServiceDep) -> None:
    """With TALKER_API_KEYS set, every /v1 call needs `Authorization: Bearer <one of them>` (as OpenAI's)."""
    if not service.api_keys_required:
        return  # the open demo
    given = bearer_token(request)
    if given is None:
        raise Refusal(RefusalKind.UNAUTHENTICATED, "unauthorized",
                      detail="send Authorization: Bearer <API key> (TALKER_API_KEYS)")
    if not service.accepts_api_key(given):
        raise Refusal(RefusalKind.FORBIDDEN, "forbidden", detail="unknown API key")


async def admit(service: ServiceDep) -> None:
    service.admit()  # the error_rate fault's pick (500), then engines loaded (else 503)


async def v1_guard(request: Request) -> None:
    """What every /v1 call passes first: its API key, then admission. One dependency, not a tree of three
    (each node costs FastAPI tens of microseconds per request)."""
    service: TalkerService = request.app.state.service
    await require_api_key(request, service)
    await admit(service)


V1_GUARDS = [Depends(v1_guard)]
v1 = APIRouter(prefix="/v1", tags=["talker"], dependencies=V1_GUARDS)


@v1.post("/tts", response_class=Response, responses={200: {"content": {"audio/wav": {}}}})
async def tts(body: SpeechBody, request: Request) -> Response:
    """Text -> WAV (16-bit PCM mono), produced in memory."""
    service: TalkerService = request.app.state.service  # not a dependency: see v1_guard
    req = service.speech_request(body.text, voice=body.voice, emotion=body.emotion, speed=body.speed)
    out = await service.synthesize(req)
    _describe_result(request, service, req, out.engine, out.audio_seconds, out.timings, out.truncated)
    headers = _result_headers(out.engine, out.audio_seconds, out.timings, out.truncated)
    return Response(out.wav, media_type="audio/wav", headers=headers)


@v1.post("/talk", response_class=Response, responses={200: {"content": {"video/mp4": {}}}})
async def talk(body: TalkBody, request: Request, service: ServiceDep) -> Response:
    """Text -> talking-head MP4 (H.264 + AAC)."""
    req = _talk_request(body, service)
    out = await service.talk(req)
    _describe_result(request, service, req, out.engine, out.audio_seconds, out.timings, out.truncated)
    headers = _result_headers(out.engine, out.audio_seconds, out.timings, out.truncated)
    headers["X-Video-Frames"] = str(out.frames)
    return Response(out.mp4, media_type="video/mp4", headers=headers)


@v1.post("/talk/stream", response_class=StreamedResponse, responses={200: {"content": {FMP4_MIME_TYPE: {}}}})
async def talk_stream(body: TalkBody, request: Request, service: ServiceDep) -> StreamedResponse:
    """Text -> talking-head fragmented MP4 (H.264 + AAC), sent fragment by fragment while it is rendered.

    The Content-Type names the codecs, as a Media Source Extensions player needs them."""
    req = _talk_request(body, service)
    stream = await service.talk_stream(req, route=TALK_STREAM_ROUTE)
    ctx = request_context(request)
    ctx.details.update(chars=len(req.text), emotion=req.emotion)
    if service.log_text:
        ctx.details["text"] = req.text
    headers = {"Cache-Control": "no-store", "X-TTS-Engine": stream.spec.engine}
    return StreamedResponse(stream, ctx, headers=headers)


@v1.get("/voices")
async def voices(service: ServiceDep) -> dict[str, Any]:
    return {
        "voices": [vars(v) for v in service.voices()],
        "default": service.default_voice,
        "emotions": list(service.emotions),
    }


@v1.get("/avatars")
async def avatars(service: ServiceDep) -> dict[str, Any]:
    return {"avatars": [vars(a) for a in service.avatars()], "default": service.default_avatar}


def _talk_request(body: TalkBody, service: TalkerService) -> SpeechRequest:
    return service.speech_request(body.text, voice=body.voice, emotion=body.emotion, speed=body.speed,
                                  avatar=body.avatar)


def _describe_result(
    request: Request, service: TalkerService, req: SpeechRequest, engine: str, audio_s: float,
    timings: dict[str, float], truncated: bool,
) -> None:
    ctx = request_context(request)
    ctx.timings = dict(timings)
    ctx.details.update(engine=engine, audio_seconds=round(audio_s, 3), chars=len(req.text), emotion=req.emotion)
    if truncated:
        ctx.details.update(truncated=True, end_reason=TRUNCATED_END_REASON)
        service.count_truncated(request.scope["route"].path)  # the route template: a bounded label
    if service.log_text:
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
    return Response(service.metrics_exposition(), media_type=CONTENT_TYPE_LATEST)


# --- /admin: fault injection -----------------------------------------------------------------------
async def require_admin(request: Request, service: ServiceDep) -> None:
    if not service.admin_enabled:
        raise ApiError(404, "not found")  # disabled: look exactly like a route that does not exist
    given = bearer_token(request)
    if given is None:
        raise Refusal(RefusalKind.UNAUTHENTICATED, "unauthorized",
                      detail="send Authorization: Bearer <TALKER_ADMIN_TOKEN>")
    if not service.accepts_admin_token(given):
        raise Refusal(RefusalKind.FORBIDDEN, "forbidden", detail="wrong admin token")


admin = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])


@admin.get("/faults")
async def get_faults(service: ServiceDep) -> dict[str, Any]:
    return service.fault_state()


@admin.post("/faults")
async def set_faults(request: Request, service: ServiceDep) -> dict[str, Any]:
    # The body is parsed here, after the auth check, so an anonymous caller learns nothing from validation.
    body = await _parse_body(request, FaultBody)
    service.set_faults(error_rate=body.error_rate, extra_latency_ms=body.extra_latency_ms, not_ready=body.not_ready,
                       llm_extra_latency_ms=body.llm_extra_latency_ms, llm_error_rate=body.llm_error_rate)
    return service.fault_state()


@admin.delete("/faults")
async def clear_faults(service: ServiceDep) -> dict[str, Any]:
    service.clear_faults()
    return service.fault_state()


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
