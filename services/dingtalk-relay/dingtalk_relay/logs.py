"""Logging: one JSON object per line (as talker writes them), with robot tokens and secrets kept out of every line."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus


class RedactSecrets(logging.Filter):
    """Defence in depth: we never log secrets on purpose, this catches third-party messages and tracebacks."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        for secret in secrets:
            if len(secret) >= 4:
                self._secrets |= {secret, quote(secret, safe=""), quote_plus(secret)}

    def _redact(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        redacted = self._redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._redact(record.exc_text)
        return True


def quiet_http_client_logs() -> None:
    # httpx logs every request URL at INFO, and DingTalk's URL carries access_token and sign.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


def install_redaction(secrets: Iterable[str]) -> RedactSecrets:
    """Attach one redacting filter to every root handler (records from all loggers pass through them)."""
    root = logging.getLogger()
    existing = next(
        (f for h in root.handlers for f in h.filters if isinstance(f, RedactSecrets)),
        None,
    )
    redactor = existing or RedactSecrets()
    redactor.add(secrets)
    for handler in root.handlers:
        if redactor not in handler.filters:
            handler.addFilter(redactor)
    return redactor


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "msg"}` per record; uvicorn's access line adds `method`, `path`, `status`.

    Nothing passed through `extra=` is written: only the message, which the redacting filter has already seen.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        # uvicorn's access record: args = (client, method, path, http version, status); None once redacted.
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            _, entry["method"], entry["path"], _, entry["status"] = record.args
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            # The operator's log only (clients never see a traceback); RedactSecrets already redacted exc_text.
            entry["exc"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: str) -> None:
    """The root logger (uvicorn's loggers propagate to it) writes JSON lines to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    quiet_http_client_logs()
