"""Client-facing errors: one JSON body `{"error", "field"?, "detail", ...}` for every answer that is not a success.

`error` is a fixed identifier (`unknown_target`, `dingtalk_unavailable`, ...), `field` names what the caller must
fix (every 4xx about the request has one), `detail` says what happened in words. `message` repeats `detail`:
the key these bodies carried before they took talker's shape, kept for whoever reads it. Nothing here echoes the
caller's input or includes a stack trace.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic_core import ErrorDetails
from starlette.exceptions import HTTPException as StarletteHTTPException

MAX_FIELD_ERRORS = 20  # a payload with 10000 bad alerts gets a readable answer, not a 10000-entry list


class ApiError(Exception):
    """An error answered as JSON by the handler install_error_handlers() registers."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(error)
        self.status = status
        self.body: dict[str, Any] = {"error": error}
        if field is not None:
            self.body["field"] = field
        self.body.update(detail=detail, message=detail, **extra)
        self.headers = headers


def invalid_input(errors: Sequence[ErrorDetails]) -> ApiError:
    """Turn pydantic's error list into one 422 naming the first bad field (the first 20 of them under `fields`)."""
    fields = [
        # loc () is the body as a whole (not JSON, not an object); pydantic's msg never contains the input.
        {"field": ".".join(str(part) for part in error["loc"]) or "body", "detail": error["msg"]}
        for error in errors[:MAX_FIELD_ERRORS]
    ]
    first = fields[0]["field"] if fields else "body"
    detail = f"not an Alertmanager v4 webhook payload ({first})"
    return ApiError(422, "invalid_payload", detail, field=first, fields=fields)


def error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc)

    async def on_http_error(_: Request, exc: Exception) -> JSONResponse:
        # Unknown routes (404) and methods (405): the same body shape, with Starlette's own words as detail.
        assert isinstance(exc, StarletteHTTPException)
        error = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        body = ApiError(exc.status_code, error, str(exc.detail)).body
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
