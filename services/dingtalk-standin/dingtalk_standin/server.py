"""DingTalk custom-robot stand-in: the documented robot contract, an inbox API and a small HTML inbox.

STDLIB ONLY so it runs in any Python image as the demo's "DingTalk":

    python -m dingtalk_standin --host 0.0.0.0 --port 8070 --robot TOKEN[:SECRET[:KEYWORD]] ...
    DINGTALK_STANDIN_ROBOTS="tok1:sec1:kw1,tok2::" python -m dingtalk_standin

or in-process in tests: ``DingTalkStandin(robots=[Robot("tok", "sec", "kw")]).start() -> base_url``.

Contract (always HTTP 200 with errcode/errmsg, like DingTalk):
- unknown access_token -> 300001; body over 20000 bytes -> 460101; body not JSON -> 40035
- signed robot: timestamp (ms) within 1 h of now and sign == base64(HMAC-SHA256(secret, f"{ts}\\n{secret}"))
  else 310000; keyword robot: keyword must occur in the message text/title else 310000
- bad shape (msgtype, markdown.title/text strings, at.atMobiles list of strings, at.isAtAll bool) -> 40035
- rate limit model: at most `rate_limit` (20) ACCEPTED messages per token in any sliding `rate_window` (60 s);
  the next one gets 130101 and the token stays throttled for `throttle_seconds` (600 s, as DingTalk documents
  "限流 10 分钟"): every send during that time gets 130101 and is not stored.
Test hooks: GET/DELETE /api/messages, POST/DELETE /api/faults, GET /api/requests (count of robot calls).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAX_BODY_BYTES = 20000
SIGN_WINDOW_MS = 3600 * 1000

ERRMSG = {
    0: "ok",
    40035: "缺少参数 json",
    130101: "send too fast, exceed 20 times per minute",
    300001: "token is not exist",
    310000: "sign not match",
    460101: "message too long, exceed 20000 bytes",
}

# Where compose and `make dev` run it (stack/defaults.py; tests/stack_tests/test_stack_defaults.py compares).
DEFAULT_PORT = 8070


@dataclass(frozen=True)
class Robot:
    token: str
    secret: str = ""
    keyword: str = ""

    @classmethod
    def parse(cls, spec: str) -> Robot:
        """TOKEN[:SECRET[:KEYWORD]]"""
        token, secret, keyword = ([*spec.split(":", 2), "", ""])[:3]
        if not token:
            raise ValueError(f"robot spec {spec!r} has no token")
        return cls(token, secret, keyword)


@dataclass
class _Fault:
    errcode: int | None = None
    http_status: int | None = None
    remaining: int | None = None  # answers left, or None for time-based
    until: float | None = None


@dataclass
class _RobotState:
    accepted: deque[float] = field(default_factory=deque)
    throttled_until: float = 0.0


def expected_sign(secret: str, timestamp: str) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class DingTalkStandin:
    def __init__(
        self,
        robots: list[Robot] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rate_limit: int = 20,
        rate_window: float = 60.0,
        throttle_seconds: float = 600.0,
        clock: Any = time.time,
    ) -> None:
        self.robots = {r.token: r for r in robots or []}
        self.host, self.port = host, port
        self.rate_limit, self.rate_window, self.throttle_seconds = rate_limit, rate_window, throttle_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._messages: list[dict[str, Any]] = []
        self._answers: list[dict[str, Any]] = []  # every robot call's (token-free) answer, for tests
        self._state: dict[str, _RobotState] = {}
        self._fault: _Fault | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------------------
    def start(self) -> str:
        standin = self

        class Handler(_Handler):
            owner = standin

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        # A short poll interval makes stop() quick (shutdown waits for the serve loop to notice).
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="dingtalk-standin", daemon=True
        )
        self._thread.start()
        return self.base_url

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> DingTalkStandin:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- inspection ---------------------------------------------------------------------------------------
    @property
    def messages(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._messages)

    @property
    def answers(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._answers)

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()
            self._answers.clear()
            self._state.clear()

    def set_fault(self, spec: dict[str, Any]) -> None:
        errcode, status = spec.get("errcode"), spec.get("http_status")
        if (errcode is None) == (status is None):
            raise ValueError("give exactly one of errcode, http_status")
        count, seconds = spec.get("count"), spec.get("seconds")
        if (count is None) == (seconds is None):
            raise ValueError("give exactly one of count, seconds")
        if errcode is not None and not isinstance(errcode, int):
            raise ValueError("errcode must be an integer")
        if status is not None and not (isinstance(status, int) and 400 <= status <= 599):
            raise ValueError("http_status must be an integer 400..599")
        if count is not None and not (isinstance(count, int) and count > 0):
            raise ValueError("count must be a positive integer")
        if seconds is not None and not (isinstance(seconds, int | float) and seconds > 0):
            raise ValueError("seconds must be a positive number")
        with self._lock:
            self._fault = _Fault(
                errcode=errcode,
                http_status=status,
                remaining=count,
                until=None if seconds is None else self.clock() + float(seconds),
            )

    def clear_fault(self) -> None:
        with self._lock:
            self._fault = None

    # -- the robot contract -------------------------------------------------------------------------------
    def _take_fault(self) -> _Fault | None:
        fault = self._fault
        if fault is None:
            return None
        if fault.until is not None and self.clock() >= fault.until:
            self._fault = None
            return None
        if fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._fault = None
        return fault

    def handle_send(self, query: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON answer) for POST /robot/send."""
        with self._lock:
            fault = self._take_fault()
            if fault is not None and fault.http_status is not None:
                self._answers.append({"http_status": fault.http_status})
                return fault.http_status, {"errcode": -1, "errmsg": "injected HTTP error"}
            if fault is not None and fault.errcode is not None:
                answer = {"errcode": fault.errcode, "errmsg": ERRMSG.get(fault.errcode, "injected fault")}
            else:
                answer = self._check_and_store(parse_qs(query), body)
            self._answers.append(answer)
            return 200, answer

    def _check_and_store(self, params: dict[str, list[str]], body: bytes) -> dict[str, Any]:
        token = (params.get("access_token") or [""])[0]
        robot = self.robots.get(token)
        if robot is None:
            return _err(300001)
        if len(body) > MAX_BODY_BYTES:
            return _err(460101)
        try:
            message = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return _err(40035)
        if robot.secret:
            timestamp = (params.get("timestamp") or [""])[0]
            sign = (params.get("sign") or [""])[0]
            if not timestamp.isdigit() or abs(self.clock() * 1000 - int(timestamp)) > SIGN_WINDOW_MS:
                return {"errcode": 310000, "errmsg": "invalid timestamp"}
            if not hmac.compare_digest(sign, expected_sign(robot.secret, timestamp)):
                return {"errcode": 310000, "errmsg": "sign not match"}
        problem = _shape_problem(message)
        if problem:
            return {"errcode": 40035, "errmsg": f"invalid parameter: {problem}"}
        title, text = _title_text(message)
        if robot.keyword and robot.keyword not in text and robot.keyword not in title:
            return {"errcode": 310000, "errmsg": "keywords not in content"}
        now = self.clock()
        state = self._state.setdefault(token, _RobotState())
        if now < state.throttled_until:
            return _err(130101)
        while state.accepted and state.accepted[0] <= now - self.rate_window:
            state.accepted.popleft()
        if len(state.accepted) >= self.rate_limit:
            state.throttled_until = now + self.throttle_seconds
            return _err(130101)
        state.accepted.append(now)
        at = message.get("at") or {}
        self._messages.append(
            {
                "token": token,
                "received_at": now,
                "msgtype": message["msgtype"],
                "title": title,
                "text": text,
                "at": {"atMobiles": list(at.get("atMobiles") or []), "isAtAll": bool(at.get("isAtAll", False))},
                "body_bytes": len(body),
            }
        )
        return _err(0)


def _err(code: int) -> dict[str, Any]:
    return {"errcode": code, "errmsg": ERRMSG[code]}


def _shape_problem(message: Any) -> str:
    if not isinstance(message, dict):
        return "body must be a JSON object"
    msgtype = message.get("msgtype")
    if msgtype == "markdown":
        markdown = message.get("markdown")
        if not isinstance(markdown, dict):
            return "markdown"
        for key in ("title", "text"):
            if not isinstance(markdown.get(key), str) or not markdown[key]:
                return f"markdown.{key}"
    elif msgtype == "text":
        text = message.get("text")
        if not isinstance(text, dict) or not isinstance(text.get("content"), str) or not text["content"]:
            return "text.content"
    else:
        return "msgtype"
    at = message.get("at")
    if at is not None:
        if not isinstance(at, dict):
            return "at"
        mobiles = at.get("atMobiles")
        if mobiles is not None and (not isinstance(mobiles, list) or not all(isinstance(m, str) for m in mobiles)):
            return "at.atMobiles"
        if "isAtAll" in at and not isinstance(at["isAtAll"], bool):
            return "at.isAtAll"
    return ""


def _title_text(message: dict[str, Any]) -> tuple[str, str]:
    if message["msgtype"] == "markdown":
        return message["markdown"]["title"], message["markdown"]["text"]
    return "", message["text"]["content"]


# The inbox page lives next to this file so the demo image (which copies this folder) serves it too.
INBOX_HTML = Path(__file__).with_name("inbox.html")


class _Handler(BaseHTTPRequestHandler):
    owner: DingTalkStandin
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        # The default logs the request line, which carries access_token and sign.
        return

    def _send(self, status: int, payload: Any, content_type: str = "application/json; charset=utf-8") -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/healthz":
            self._send(200, {"status": "ok"})
        elif path == "/api/messages":
            self._send(200, self.owner.messages)
        elif path == "/api/requests":
            self._send(200, self.owner.answers)
        elif path in ("/", "/index.html"):
            self._send(200, INBOX_HTML.read_bytes(), "text/html; charset=utf-8")
        else:
            self._send(404, {"error": "not found"})

    def do_DELETE(self) -> None:
        path = urlsplit(self.path).path
        if path == "/api/messages":
            self.owner.clear()
            self._send(200, {"status": "cleared"})
        elif path == "/api/faults":
            self.owner.clear_fault()
            self._send(200, {"status": "cleared"})
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        body = self._body()
        if parts.path == "/robot/send":
            status, answer = self.owner.handle_send(parts.query, body)
            self._send(status, answer)
        elif parts.path == "/api/faults":
            try:
                self.owner.set_fault(json.loads(body or b"{}"))
            except (ValueError, AttributeError) as exc:
                self._send(HTTPStatus.UNPROCESSABLE_ENTITY, {"error": "invalid fault", "message": str(exc)})
                return
            self._send(200, {"status": "set"})
        else:
            self._send(404, {"error": "not found"})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--robot", action="append", default=[], help="TOKEN[:SECRET[:KEYWORD]] (repeatable)")
    parser.add_argument("--rate-limit", type=int, default=20)
    parser.add_argument("--rate-window", type=float, default=60.0)
    parser.add_argument("--throttle-seconds", type=float, default=600.0)
    args = parser.parse_args(argv)
    specs = list(args.robot) + [s for s in os.environ.get("DINGTALK_STANDIN_ROBOTS", "").split(",") if s.strip()]
    robots = [Robot.parse(spec.strip()) for spec in specs]
    standin = DingTalkStandin(
        robots,
        host=args.host,
        port=args.port,
        rate_limit=args.rate_limit,
        rate_window=args.rate_window,
        throttle_seconds=args.throttle_seconds,
    )
    url = standin.start()
    print(f"DingTalk stand-in on {url} with {len(robots)} robot(s)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        standin.stop()


if __name__ == "__main__":
    main()
