"""Why TalkerService refuses a request, without HTTP: a Refusal has a kind, an error message and the field.

Routes raise these or let them pass; errors.py answers each kind with its HTTP status and the JSON body
`{"error", "field"?, "detail"?, ...}`, and counts it once under the kind's RejectReason (if any).
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from talker.metrics import RejectReason


class RefusalKind(Enum):
    INVALID = "invalid"  # bad input (422)
    UNAUTHENTICATED = "unauthenticated"  # no API key / admin token (401)
    FORBIDDEN = "forbidden"  # a wrong one (403)
    OVERLOADED = "overloaded"  # every slot and queue place taken (429)
    QUEUE_TIMEOUT = "queue_timeout"  # the deadline passed while waiting for a slot (503)
    RUN_TIMEOUT = "run_timeout"  # the deadline passed while running; the work was stopped (504)
    NOT_READY = "not_ready"  # engines still loading or failed (503)
    INJECTED_FAULT = "injected_fault"  # the error_rate fault chose this request (500)


# The talker_requests_rejected_total reason of each kind; None: not a rejection (not ready, injected fault).
REJECT_REASON: dict[RefusalKind, RejectReason | None] = {
    RefusalKind.INVALID: RejectReason.INVALID,
    RefusalKind.UNAUTHENTICATED: RejectReason.UNAUTHORIZED,
    RefusalKind.FORBIDDEN: RejectReason.UNAUTHORIZED,
    RefusalKind.OVERLOADED: RejectReason.OVERLOADED,
    RefusalKind.QUEUE_TIMEOUT: RejectReason.TIMEOUT,
    RefusalKind.RUN_TIMEOUT: RejectReason.TIMEOUT,
    RefusalKind.NOT_READY: None,
    RefusalKind.INJECTED_FAULT: None,
}


class Refusal(Exception):
    """A request the service does not serve. `extra` goes into the error body (e.g. `allowed`)."""

    def __init__(
        self,
        kind: RefusalKind,
        error: str,
        *,
        field: str | None = None,
        detail: str | None = None,
        retry_after_s: int | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(error)
        self.kind = kind
        self.error = error
        self.field = field
        self.detail = detail
        self.retry_after_s = retry_after_s  # when a retry may succeed (Retry-After)
        self.extra = extra

    @property
    def reason(self) -> RejectReason | None:
        return REJECT_REASON[self.kind]


def invalid(error: str, *, field: str, detail: str | None = None, **extra: Any) -> Refusal:
    return Refusal(RefusalKind.INVALID, error, field=field, detail=detail, **extra)


def unknown_value(field: str, allowed: list[str]) -> Refusal:
    """A value outside a fixed or configured set; `allowed` lists what is accepted."""
    return invalid(f"unknown {field}", field=field, detail=f"use one of the allowed {field} values", allowed=allowed)
