"""Client-facing errors: one JSON shape `{"error", "field"?, "detail"?, ...}` for every 4xx/5xx we answer.

Clients (and the demo page) can always read `error` and, for bad input, `field`. Nothing here ever
includes a stack trace or echoes the client's text back. The service's refusals (refusals.py) get their
HTTP status here; every answered rejection is counted once, by the `count_rejection` the app passes in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from talker.engine_contract import EMOTIONS
from talker.metrics import RejectReason
from talker.observe import TOO_LARGE_BODY, BodyTooLarge, request_context
from talker.refusals import Refusal, RefusalKind


class ApiError(Exception):
    """An error answered as JSON; `reason` (a talker_requests_rejected_total label) counts it."""

    def __init__(
        self,
        status: int,
        error: str,
        *,
        field: str | None = None,
        detail: Any = None,
        reason: RejectReason | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(error)
        self.status = status
        self.body: dict[str, Any] = {"error": error}
        if field is not None:
            self.body["field"] = field
        if detail is not None:
            self.body["detail"] = detail
        self.body.update(extra)
        self.reason = reason
        self.headers = headers


def invalid_input(errors: Sequence[Any]) -> ApiError:
    """Turn pydantic's error list into one 4xx naming the first bad field (all of them under `errors`)."""
    fields = [_describe(e) for e in errors]
    first = fields[0] if fields else {"field": "body", "detail": "invalid request"}
    if first.get("type") == "json_invalid":
        return ApiError(400, "malformed JSON", field="body", detail=first["detail"], reason=RejectReason.INVALID)
    extra: dict[str, Any] = {}
    if first["field"] == "emotion":
        extra["allowed"] = list(EMOTIONS)
    return ApiError(
        422,
        f"invalid {first['field']}",
        field=first["field"],
        detail=first["detail"],
        reason=RejectReason.INVALID,
        errors=[{"field": f["field"], "detail": f["detail"]} for f in fields],
        **extra,
    )


def _describe(error: Any) -> dict[str, str]:
    loc = [str(part) for part in error.get("loc", ()) if part != "body"]
    kind = str(error.get("type", ""))
    if kind == "json_invalid":
        pos = error.get("loc", ("body", "?"))[-1]
        return {"field": "body", "type": kind, "detail": f"request body is not valid JSON (at character {pos})"}
    if not loc:
        detail = "request body is required" if kind == "missing" else "request body must be a JSON object"
        return {"field": "body", "type": kind, "detail": detail}
    # pydantic's message never contains the input itself, so it is safe to return.
    return {"field": ".".join(loc), "type": kind, "detail": str(error.get("msg", "invalid value"))}


# The HTTP status of each refusal kind.
REFUSAL_STATUS: dict[RefusalKind, int] = {
    RefusalKind.INVALID: 422,
    RefusalKind.UNAUTHENTICATED: 401,
    RefusalKind.FORBIDDEN: 403,
    RefusalKind.OVERLOADED: 429,
    RefusalKind.QUEUE_TIMEOUT: 503,
    RefusalKind.RUN_TIMEOUT: 504,
    RefusalKind.NOT_READY: 503,
    RefusalKind.INJECTED_FAULT: 500,
}


def refusal_error(refusal: Refusal) -> ApiError:
    headers: dict[str, str] = {}
    if refusal.retry_after_s is not None:
        headers["Retry-After"] = str(refusal.retry_after_s)
    if refusal.kind is RefusalKind.UNAUTHENTICATED:
        headers["WWW-Authenticate"] = "Bearer"
    return ApiError(
        REFUSAL_STATUS[refusal.kind], refusal.error, field=refusal.field, detail=refusal.detail,
        reason=refusal.reason, headers=headers or None, **refusal.extra,
    )


def error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)


def install_error_handlers(app: FastAPI, count_rejection: Callable[[RejectReason], None]) -> None:
    """count_rejection(reason) is called for every refused request that has a reason."""

    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        if exc.reason:
            count_rejection(exc.reason)
        # The log line of this request says why it failed (error and field, never the input).
        details = request_context(request).details
        details["error"] = exc.body["error"]
        if "field" in exc.body:
            details["field"] = exc.body["field"]
        return error_response(exc)

    async def on_refusal(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Refusal)
        return await on_api_error(request, refusal_error(exc))

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return await on_api_error(request, invalid_input(exc.errors()))

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if isinstance(exc, BodyTooLarge):
            return await on_api_error(request, ApiError(413, reason=RejectReason.INVALID, **TOO_LARGE_BODY))
        messages = {404: "not found", 405: "method not allowed"}
        body = {"error": messages.get(exc.status_code, str(exc.detail).lower())}
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(Refusal, on_refusal)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
