"""DingTalk robot errcodes: which ones we name in metrics and which ones DingTalk asks us to retry.

A leaf module (no imports from the package) so metrics.py can label by errcode without importing the HTTP client.
"""

from __future__ import annotations

# errcodes we name in metrics (label values must come from a small fixed set); anything else is "other".
KNOWN_ERRCODES: dict[int, str] = {
    -1: "system busy",
    40035: "invalid parameter / missing json",
    130101: "send too fast (over 20 messages/min, throttled)",
    300001: "unknown access_token",
    300005: "token does not exist",
    310000: "sign / timestamp / keyword / IP check failed",
    400013: "group chat dissolved",
    460101: "message too long (body over 20000 bytes)",
}
ERRCODE_LABELS: tuple[str, ...] = (*(str(code) for code in KNOWN_ERRCODES), "other")
# DingTalk asks callers to retry these later; everything else is a configuration or content problem.
RETRYABLE_ERRCODES = frozenset({-1, 130101})


def errcode_label(errcode: int) -> str:
    return str(errcode) if errcode in KNOWN_ERRCODES else "other"
