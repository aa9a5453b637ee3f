"""HTTP routes. Thin: check the caller, read and validate the body, ask RelayRuntime, shape the answer.

No DingTalk logic here (delivery.py, heartbeat.py); every refusal is an ApiError (errors.py).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import ValidationError

from dingtalk_relay.errors import ApiError, invalid_input
from dingtalk_relay.models import WebhookPayload
from dingtalk_relay.runtime import NotConfigured, RelayRuntime

log = logging.getLogger(__name__)
# Alertmanager's payloads are a few KiB per alert; refusing bigger ones before buffering keeps memory bounded.
MAX_BODY_BYTES = 8 * 1024 * 1024


async def get_runtime(request: Request) -> RelayRuntime:
    # async on purpose: FastAPI runs plain-def dependencies in a worker thread (a hop per request).
    runtime: RelayRuntime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[RelayRuntime, Depends(get_runtime)]


def not_configured(exc: NotConfigured) -> ApiError:
    return ApiError(503, "not_configured", str(exc))


def require_caller(endpoint: str) -> Callable[[Request, RelayRuntime], Awaitable[None]]:
    """A dependency: the webhook's bearer token, checked before the body is read or the target looked up."""

    async def check(request: Request, runtime: RuntimeDep) -> None:
        try:
            failure = runtime.refuse_caller(endpoint, request.headers.get("authorization"))
        except NotConfigured as exc:
            raise not_configured(exc) from None
        if failure == "missing":
            raise ApiError(
                401, "unauthorized", "bearer token required (Authorization: Bearer ...)", field="authorization",
                headers={"WWW-Authenticate": 'Bearer realm="dingtalk-relay"'},
            )
        if failure == "wrong":
            raise ApiError(403, "forbidden", "wrong bearer token", field="authorization")

    return check


async def read_body(request: Request) -> bytes:
    """The request body, refused with 413 as soon as it passes MAX_BODY_BYTES (declared or counted)."""
    too_large = ApiError(413, "payload_too_large", f"body over {MAX_BODY_BYTES} bytes", field="body")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large
    # Count while reading: a client that lies about (or omits) Content-Length must not make us buffer gigabytes.
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def parse_payload(request: Request) -> WebhookPayload:
    body = await read_body(request)
    try:
        return WebhookPayload.model_validate_json(body)
    except ValidationError as exc:
        raise invalid_input(exc.errors(include_url=False, include_input=False)) from None


# --- probes and metrics ----------------------------------------------------------------------------
probes = APIRouter(tags=["probes"])


@probes.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@probes.get("/readyz")
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    reason = runtime.not_ready_reason()
    if reason is not None:
        return JSONResponse({"status": "not_ready", "reason": reason}, 503)
    return JSONResponse({"status": "ready", "targets": sorted(runtime.targets)})


@probes.get("/metrics")
async def metrics(runtime: RuntimeDep) -> Response:
    return Response(runtime.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


# --- webhooks (Alertmanager) -----------------------------------------------------------------------
webhooks = APIRouter(tags=["webhooks"])


@webhooks.post("/alertmanager/{target}", dependencies=[Depends(require_caller("alertmanager"))])
async def alertmanager(target: str, request: Request, runtime: RuntimeDep) -> JSONResponse:
    try:
        dispatcher = runtime.dispatcher(target)
        if dispatcher is None:
            raise ApiError(404, "unknown_target", "no such target; see RELAY_TARGETS_FILE", field="target")
        payload = await parse_payload(request)
        result = await runtime.deliver(dispatcher, payload)
    except NotConfigured as exc:
        raise not_configured(exc) from None
    except ApiError:
        raise
    except Exception:  # Alertmanager must get a retryable answer, a client never a traceback
        log.exception("unexpected error handling a webhook for target %s", target[:40])
        raise ApiError(503, "internal_error", "internal relay error; Alertmanager will retry") from None
    if result.ok:
        return JSONResponse({"status": "sent", "alerts": len(payload.alerts)})
    error = "dingtalk_rejected" if result.status_code == 502 else "dingtalk_unavailable"
    extra = {"errcode": result.errcode} if result.errcode is not None else {}
    raise ApiError(result.status_code, error, result.reason, **extra)


@webhooks.post("/heartbeat", dependencies=[Depends(require_caller("heartbeat"))])
async def heartbeat(request: Request, runtime: RuntimeDep) -> JSONResponse:
    try:
        payload = await parse_payload(request)
        monitor = runtime.heartbeat_monitor()
        if not any(alert.status == "firing" for alert in payload.alerts):
            # A resolved Watchdog means Prometheus stopped sending it: the opposite of a sign of life.
            return JSONResponse({"status": "ignored", "reason": "no firing alert", "pipeline_broken": monitor.broken})
        monitor.beat()
        return JSONResponse({"status": "ok", "pipeline_broken": monitor.broken})
    except NotConfigured as exc:
        raise not_configured(exc) from None
    except ApiError:
        raise
    except Exception:
        log.exception("unexpected error handling a heartbeat")
        raise ApiError(503, "internal_error", "internal relay error") from None
