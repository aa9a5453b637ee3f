"""The one HTTP client of stack/ and devtools/: a request, its status and body, JSON in and out.

An HTTP error status is an answer (the caller looks at it); only "nothing answered" (refused, timed out,
unknown host) raises RequestFailed, whose message names the method and the URL. Standard library only: it runs
in the relay image (config-init, the compose smoke container) as well as on a developer's machine.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class RequestFailed(RuntimeError):
    """Nothing answered the request (connection refused, timeout, DNS), or an answer was not what was required."""


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")

    def json(self) -> Any:
        """The body as JSON; its text when it is not JSON; None when it is empty."""
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            return self.text


def request(method: str, url: str, body: Any = None, *, data: bytes | None = None,
            headers: Mapping[str, str] | None = None, timeout: float = 10.0,
            on_first_bytes: Callable[[], None] | None = None) -> Reply:
    """Send `body` as JSON (or `data` as it is) and read the whole answer; `on_first_bytes` is called as soon
    as the first byte of a successful answer arrives (a stream's time to first byte)."""
    if body is not None:
        data = json.dumps(body, ensure_ascii=False).encode()
    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - URLs from our config or operator
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        req.add_header(key, value)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            first = resp.read(1) if on_first_bytes is not None else b""
            if first and on_first_bytes is not None:
                on_first_bytes()
            return Reply(int(resp.status), first + resp.read())
    except urllib.error.HTTPError as exc:
        return Reply(int(exc.code), exc.read())
    except (urllib.error.URLError, OSError) as exc:
        raise RequestFailed(f"{method} {url}: {exc}") from None


def request_json(method: str, url: str, body: Any = None, *, headers: Mapping[str, str] | None = None,
                 timeout: float = 10.0) -> tuple[int, Any]:
    """(status, the answer as JSON, or its text when it is not JSON, or None when empty)."""
    reply = request(method, url, body, headers={"Accept": "application/json", **(headers or {})}, timeout=timeout)
    return reply.status, reply.json()


def get_json(url: str, *, headers: Mapping[str, str] | None = None, timeout: float = 10.0) -> Any:
    """The JSON of a 200 answer; anything else raises RequestFailed with the start of the body."""
    status, body = request_json("GET", url, headers=headers, timeout=timeout)
    if status != 200:
        raise RequestFailed(f"GET {url}: HTTP {status}: {str(body)[:300]}")
    return body


def get_text(url: str, timeout: float = 10.0) -> str:
    """The text of a 2xx answer (a /metrics page); anything else raises RequestFailed."""
    reply = request("GET", url, timeout=timeout)
    if not 200 <= reply.status < 300:
        raise RequestFailed(f"GET {url}: HTTP {reply.status}: {reply.text[:300]}")
    return reply.text


def http_status(url: str, timeout: float = 2.0) -> int:
    """HTTP status of a GET, or 0 when nothing answers (readiness polling)."""
    try:
        return request("GET", url, timeout=timeout).status
    except RequestFailed:
        return 0
