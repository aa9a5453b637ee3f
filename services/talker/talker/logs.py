"""Structured logs: one JSON object per line, so Loki/ELK/`jq` can filter by route, status or request id."""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar
from typing import Any

# Attributes every LogRecord has; anything else was passed through `extra=` and belongs in the JSON.
# uvicorn adds "color_message" (the message with ANSI colours) for its own console formatter.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",
}


# uvicorn's ERROR when an app returns before the body's last chunk. talker does that on purpose when it cuts a
# stream (the client left, stopped reading, or the deadline passed): the client must see a truncated body, not a
# short file. Such an end is counted (talker_streams_ended_total{outcome}) and in the access line; it is no error.
UNFINISHED_RESPONSE_MSG = "ASGI callable returned without completing response."
QUIET_STREAM_CUTS = frozenset({"client_closed", "slow_reader", "timeout"})
# Set by the stream response in its own task when it ends a stream early; uvicorn logs in that same task.
stream_cut: ContextVar[str | None] = ContextVar("talker_stream_cut", default=None)


class QuietStreamCuts(logging.Filter):
    """Drops uvicorn's unfinished-response ERROR for a stream talker cut on purpose; every other record passes
    (a stream that ends in `error` still logs it, and "stream failed" with its traceback)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.msg == UNFINISHED_RESPONSE_MSG and stream_cut.get() in QUIET_STREAM_CUTS)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            # Tracebacks go to the operator's log, never to clients.
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: str = "INFO") -> None:
    """Send the root logger and uvicorn's loggers to stdout as JSON lines."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    uvicorn_error = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, QuietStreamCuts) for f in uvicorn_error.filters):
        uvicorn_error.addFilter(QuietStreamCuts())
    # Our middleware writes one richer line per request; uvicorn's access line would duplicate it.
    logging.getLogger("uvicorn.access").disabled = True
