"""Per-request observation: request id, HTTP metrics, one JSON log line, and the last-resort 500.

A plain ASGI middleware (not BaseHTTPMiddleware) so it adds microseconds, not a task per request,
and so it sees every response, including errors raised past FastAPI's handlers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from talker.metrics import UNMATCHED_ROUTE, RejectReason, TalkerMetrics

access_log = logging.getLogger("talker.access")
error_log = logging.getLogger("talker.error")

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# A caller's id is echoed only if it looks like an id, so it cannot inject into logs or headers.
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
CONTEXT_KEY = "talker.context"
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
# Bodies are a few hundred characters of JSON; refusing big ones before reading them keeps memory bounded.
MAX_BODY_BYTES = 64 * 1024
TOO_LARGE_BODY: dict[str, Any] = {
    "error": "request body too large", "field": "body", "detail": f"at most {MAX_BODY_BYTES} bytes",
}


class BodyTooLarge(HTTPException):
    """Raised while reading a body that passes MAX_BODY_BYTES (a chunked body declares no Content-Length).

    An HTTPException so FastAPI's body parsing passes it on unchanged to the error handlers (errors.py)."""

    def __init__(self) -> None:
        super().__init__(413, detail=TOO_LARGE_BODY["detail"])


# The log line's end_reason of a request whose audio was cut at the limit (its text said more).
TRUNCATED_END_REASON = "TALKER_MAX_AUDIO_SECONDS reached"


@dataclass
class RequestContext:
    request_id: str
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds, for the log line
    details: dict[str, Any] = field(default_factory=dict)  # engine, audio_seconds, text (if allowed)


def request_context(request: Request) -> RequestContext:
    ctx = request.scope.get(CONTEXT_KEY)
    if ctx is None:  # only when the app runs without the middleware (never in create_app)
        ctx = request.scope[CONTEXT_KEY] = RequestContext(uuid.uuid4().hex)
    return ctx


class RequestObserver:
    def __init__(self, app: ASGIApp, *, metrics: TalkerMetrics, count_rejection: Callable[[RejectReason], None],
                 record_metrics: bool = True) -> None:
        self.app = app
        self.metrics = metrics
        self.count_rejection = count_rejection  # the one counter of refused requests (TalkerService's)
        self.record_metrics = record_metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx = RequestContext(_request_id(scope))
        scope[CONTEXT_KEY] = ctx
        app_root_path = str(scope.get("root_path", ""))  # routing changes it in place for mounted apps
        started = time.perf_counter()
        status = 0
        request_id_header = (b"x-request-id", ctx.request_id.encode())

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [*message.get("headers", []), request_id_header]
            await send(message)

        received = 0

        async def receive_bounded() -> Message:
            # Content-Length is checked up front; this also bounds chunked bodies, which declare no length.
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > MAX_BODY_BYTES:
                    raise BodyTooLarge()
            return message

        if self.record_metrics:
            self.metrics.http_in_flight.inc()
        try:
            if _declared_body_size(scope) > MAX_BODY_BYTES:
                self.count_rejection(RejectReason.INVALID)
                await _send_json(send_observed, 413, TOO_LARGE_BODY)
                return
            await self.app(scope, receive_bounded, send_observed)
        except asyncio.CancelledError:
            status = status or 499  # the client went away before we answered
            raise
        except BodyTooLarge:  # read outside FastAPI's error handlers (they answer it themselves otherwise)
            self.count_rejection(RejectReason.INVALID)
            if status == 0:
                await _send_json(send_observed, 413, TOO_LARGE_BODY)
        except Exception:
            error_log.exception("unhandled error", extra={"request_id": ctx.request_id})
            if status == 0:
                await _send_json(send_observed, 500, {"error": "internal error", "request_id": ctx.request_id})
        finally:
            seconds = time.perf_counter() - started
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "OTHER"
            route = _route_template(scope, app_root_path)
            if self.record_metrics:
                self.metrics.http_in_flight.dec()
                self.metrics.observe_http(method, route, status or 500, seconds)
            _log_request(ctx, method, route, status or 500, seconds)


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if _CLIENT_REQUEST_ID.match(candidate):
                return candidate
    return uuid.uuid4().hex


def _route_template(scope: Scope, app_root_path: str) -> str:
    # The router stores the matched route in the scope; its template (not the raw path) is the label.
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str) and path:
        return path
    # A Mount (the demo page's /static files) stores no route; it appends its own path to root_path.
    root_path = str(scope.get("root_path", ""))
    if root_path != app_root_path and root_path.startswith(app_root_path):
        return root_path[len(app_root_path):]
    return UNMATCHED_ROUTE


def _declared_body_size(scope: Scope) -> int:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0  # the server rejects a malformed length itself
    return 0


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def _log_request(ctx: RequestContext, method: str, route: str, status: int, seconds: float) -> None:
    level = logging.ERROR if status >= 500 else logging.WARNING if status >= 400 else logging.INFO
    if route in QUIET_ROUTES:
        level = logging.DEBUG  # probes and scrapes every few seconds would drown the request lines
    extra: dict[str, Any] = {
        "request_id": ctx.request_id,
        "method": method,
        "route": route,
        "status": status,
        "duration_s": round(seconds, 4),
    }
    if ctx.timings:
        extra["stages"] = {stage: round(s, 4) for stage, s in ctx.timings.items()}
    extra.update(ctx.details)
    access_log.log(level, "request", extra=extra)
