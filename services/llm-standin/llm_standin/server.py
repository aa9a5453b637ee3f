"""STAND-IN for an OpenAI-compatible chat-completions server: scripted replies, streamed token by token.

STDLIB ONLY so it runs in any Python image as the demo's "LLM":

    python -m llm_standin --host 0.0.0.0 --port 8091 --first-token-delay 0.3 --tokens-per-second 20
    LLM_STANDIN_API_KEYS=demo-key LLM_STANDIN_REPLY_FILE=replies.txt python -m llm_standin

or in-process in tests: ``LLMStandin(replies=["Hi. 你好。"], first_token_delay=0.2).start() -> base_url``
(the OpenAI base URL is ``base_url + "/v1"``).

Contract (OpenAI's documented chat-completions API, the subset chat clients use):
- POST /v1/chat/completions {model, messages, stream?, stream_options.include_usage?, max_tokens? or
  max_completion_tokens?}. stream=false: one `chat.completion` object with `usage`. stream=true: Server-Sent
  Events, `data: {chat.completion.chunk}` lines (first delta carries the role, then one token of content per
  chunk, then an empty delta with `finish_reason` "stop" or "length"), a usage chunk (`choices: []`) when
  `stream_options.include_usage` is true, and `data: [DONE]`.
- GET /v1/models: the models it answers to, `owned_by` says STAND-IN.
- Bearer API key: when keys are configured, `Authorization: Bearer <key>` must carry one, else 401.
- Errors have OpenAI's shape: {"error": {"message", "type", "param", "code"}}; unknown model -> 404.
Timing: the first token leaves `first_token_delay` seconds after the request, then one token every
1/`tokens_per_second` seconds (an absolute schedule, so delays do not add up).
Replies: the `replies` list (or a reply file: replies separated by blank lines) in turn, one per request; the
default script mixes Chinese and English sentences. A token is one CJK character, or a word/punctuation mark
with its leading spaces.
Error injection: the models `standin-error-500`, `standin-error-429` (HTTP errors) and `standin-cut` (the stream
stops after half of its tokens without `finish_reason` or `[DONE]`, the connection is closed mid-body); or
`fault=` / LLM_STANDIN_FAULT (`error-500`, `error-429`, `cut`) for every request.
Test hooks: GET /api/requests (one record per completion request: model, stream, status, outcome, whether a
key was sent and valid; never the key or the messages), DELETE /api/requests.
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("llm_standin")

# Where compose and `make dev` will run it.
DEFAULT_PORT = 8091  # next to the ASR stand-in (8090)
DEFAULT_MODEL = "standin-chat"
OWNED_BY = "llm-standin (STAND-IN, scripted replies)"
FAULTS = ("error-500", "error-429", "cut")
FAULT_MODELS = {f"standin-{fault}": fault for fault in FAULTS}
MAX_BODY_BYTES = 1_000_000

DEFAULT_SCRIPT: tuple[str, ...] = (
    "你好！我是演示用的数字人助手。这段回答是预先写好的，用来测试流式对话。",
    "Hello! I am the stand-in model of this demo. Every word you read was written in advance, "
    "and it streams at a fixed rate.",
    "好的，我明白了。The stand-in mixes Chinese and English sentences. 每个句子都会尽快送去合成语音。",
    "That is a good question. The answer costs 3.5 seconds at most, e.g. on a busy machine. 谢谢你的耐心！",
)

_TOKEN = re.compile(r"\s*(?:[A-Za-z0-9']+|\S)", re.UNICODE)


def tokenize(text: str) -> list[str]:
    """The stand-in's tokens: one CJK character, or a word / punctuation mark with its leading spaces."""
    return _TOKEN.findall(text)


def read_reply_file(path: Path) -> list[str]:
    """Replies separated by blank lines (a reply may span lines)."""
    blocks = re.split(r"\n\s*\n", path.read_text(encoding="utf-8"))
    replies = [" ".join(line.strip() for line in block.splitlines() if line.strip()) for block in blocks]
    replies = [reply for reply in replies if reply]
    if not replies:
        raise ValueError(f"reply file {path} holds no reply")
    return replies


class StandinError(Exception):
    def __init__(self, status: int, message: str, *, type_: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class LLMStandin:
    def __init__(
        self,
        replies: Sequence[str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        model: str = DEFAULT_MODEL,
        api_keys: Sequence[str] = (),
        first_token_delay: float = 0.3,
        tokens_per_second: float = 20.0,
        fault: str | None = None,
    ) -> None:
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"fault must be one of {', '.join(FAULTS)}")
        if first_token_delay < 0 or tokens_per_second <= 0:
            raise ValueError("first_token_delay must be >= 0 and tokens_per_second > 0")
        self.replies = list(replies or DEFAULT_SCRIPT)
        self.host, self.port, self.model = host, port, model
        self.api_keys = [key for key in api_keys if key]
        self.first_token_delay, self.tokens_per_second = first_token_delay, tokens_per_second
        self.fault = fault
        self._lock = threading.Lock()
        self._next_reply = 0
        self._requests: list[dict[str, Any]] = []
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
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="llm-standin", daemon=True
        )
        self._thread.start()
        return self.base_url

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return self.base_url + "/v1"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> LLMStandin:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- inspection ---------------------------------------------------------------------------------------
    @property
    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(record) for record in self._requests]

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    def models(self) -> list[str]:
        return [self.model, *FAULT_MODELS]

    # -- the contract -------------------------------------------------------------------------------------
    def new_record(self, authorization: str | None) -> dict[str, Any]:
        record: dict[str, Any] = {
            "model": None, "stream": None, "status": None, "outcome": None,
            "key_sent": bool(authorization), "key_valid": self.authorized(authorization),
            "completion_tokens": 0,
        }
        with self._lock:
            self._requests.append(record)
        return record

    def authorized(self, authorization: str | None) -> bool:
        if not self.api_keys:
            return True
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return False
        # Compare with every key (no early exit) so the time does not tell which one nearly matched.
        return any([hmac.compare_digest(key.strip().encode(), k.encode()) for k in self.api_keys])

    def next_reply(self) -> str:
        with self._lock:
            reply = self.replies[self._next_reply % len(self.replies)]
            self._next_reply += 1
        return reply

    def parse(self, body: bytes) -> dict[str, Any]:
        """The validated request; StandinError when OpenAI would refuse it."""
        try:
            request = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise StandinError(400, "We could not parse the JSON body of your request.",
                               type_="invalid_request_error") from None
        if not isinstance(request, dict):
            raise StandinError(400, "The body must be a JSON object.", type_="invalid_request_error")
        model = request.get("model")
        if not isinstance(model, str) or not model:
            raise StandinError(400, "you must provide a model parameter", type_="invalid_request_error", param="model")
        messages = request.get("messages")
        if not isinstance(messages, list) or not messages:
            raise StandinError(400, "messages must be a non-empty array", type_="invalid_request_error",
                               param="messages")
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise StandinError(400, f"messages[{index}] needs a role", type_="invalid_request_error",
                                   param=f"messages[{index}]")
            if not isinstance(message.get("content"), str | list):
                raise StandinError(400, f"messages[{index}].content must be a string or an array of parts",
                                   type_="invalid_request_error", param=f"messages[{index}].content")
        for name in ("max_tokens", "max_completion_tokens"):
            value = request.get(name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise StandinError(400, f"{name} must be a positive integer", type_="invalid_request_error",
                                   param=name)
        if not isinstance(request.get("stream", False), bool):
            raise StandinError(400, "stream must be a boolean", type_="invalid_request_error", param="stream")
        if model not in self.models():
            raise StandinError(404, f"The model `{model}` does not exist (STAND-IN models: "
                               f"{', '.join(self.models())}).", type_="invalid_request_error",
                               code="model_not_found")
        return request

    def fault_for(self, model: str) -> str | None:
        return FAULT_MODELS.get(model) or self.fault


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """A rough count, like a real tokenizer's order of magnitude: tokens of the text + 4 per message."""
    total = 0
    for message in messages:
        content = message["content"]
        text = content if isinstance(content, str) else " ".join(
            part.get("text", "") for part in content if isinstance(part, dict))
        total += len(tokenize(text)) + 4
    return total


class _ClientGone(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    owner: LLMStandin
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        # The default logs nothing useful and could echo a query string; one line per completion is logged below.
        return

    def _send(self, status: int, payload: Any) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise StandinError(413, "request body too large", type_="invalid_request_error")
        return self.rfile.read(length) if length > 0 else b""

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/healthz":
            self._send(200, {"status": "ok", "standin": True})
        elif path == "/v1/models":
            if not self.owner.authorized(self.headers.get("Authorization")):
                self._send(401, _unauthorized().body())
                return
            created = int(time.time())
            self._send(200, {"object": "list", "data": [
                {"id": name, "object": "model", "created": created, "owned_by": OWNED_BY}
                for name in self.owner.models()]})
        elif path == "/api/requests":
            self._send(200, self.owner.requests)
        else:
            self._send(404, {"error": {"message": "not found", "type": "invalid_request_error", "param": None,
                                       "code": None}})

    def do_DELETE(self) -> None:
        if urlsplit(self.path).path == "/api/requests":
            self.owner.clear()
            self._send(200, {"status": "cleared"})
        else:
            self._send(404, {"error": {"message": "not found", "type": "invalid_request_error", "param": None,
                                       "code": None}})

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/v1/chat/completions":
            self._send(404, {"error": {"message": "not found", "type": "invalid_request_error", "param": None,
                                       "code": None}})
            return
        started = time.monotonic()
        record = self.owner.new_record(self.headers.get("Authorization"))
        try:
            body = self._body()
            if not record["key_valid"]:
                raise _unauthorized()
            request = self.owner.parse(body)
            record["model"], record["stream"] = request["model"], request.get("stream", False)
            self._complete(request, record, started)
        except StandinError as exc:
            record["status"], record["outcome"] = exc.status, "error"
            self._send(exc.status, exc.body())
        except (_ClientGone, BrokenPipeError, ConnectionResetError):
            record["outcome"] = "client_gone"
            self.close_connection = True
        log.info("STAND-IN llm: POST /v1/chat/completions model=%s stream=%s status=%s outcome=%s tokens=%d "
                 "seconds=%.3f", record["model"], record["stream"], record["status"], record["outcome"],
                 record["completion_tokens"], time.monotonic() - started)

    def _complete(self, request: dict[str, Any], record: dict[str, Any], started: float) -> None:
        owner = self.owner
        fault = owner.fault_for(request["model"])
        if fault in ("error-500", "error-429"):
            status = int(fault.removeprefix("error-"))
            raise StandinError(status, f"STAND-IN injected HTTP {status}",
                               type_="server_error" if status == 500 else "rate_limit_exceeded")
        tokens = tokenize(owner.next_reply())
        limit = request.get("max_completion_tokens") or request.get("max_tokens")
        finish_reason = "stop"
        if limit is not None and len(tokens) > limit:
            tokens, finish_reason = tokens[:limit], "length"
        usage = {"prompt_tokens": prompt_tokens(request["messages"]), "completion_tokens": len(tokens)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        meta = {"id": f"chatcmpl-standin-{uuid.uuid4().hex[:24]}", "created": int(time.time()),
                "model": request["model"], "system_fingerprint": "llm-standin"}
        interval = 1.0 / owner.tokens_per_second
        first_at = started + owner.first_token_delay
        if not request.get("stream", False):
            _sleep_until(first_at + interval * max(len(tokens) - 1, 0))
            if fault == "cut":
                record["status"], record["outcome"] = 200, "cut"
                self._cut()
                return
            record["status"], record["outcome"], record["completion_tokens"] = 200, "completed", len(tokens)
            self._send(200, {**meta, "object": "chat.completion", "choices": [{
                "index": 0, "message": {"role": "assistant", "content": "".join(tokens), "refusal": None},
                "logprobs": None, "finish_reason": finish_reason}], "usage": usage})
            return
        include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        record["status"] = 200

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            event = {**meta, "object": "chat.completion.chunk",
                     "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
            if include_usage:
                event["usage"] = None
            return event

        cut_after = max(len(tokens) // 2, 1) if fault == "cut" else None
        _sleep_until(first_at)
        self._event(chunk({"role": "assistant", "content": ""}))
        for index, token in enumerate(tokens):
            if cut_after is not None and index >= cut_after:
                record["outcome"] = "cut"
                self._cut()
                return
            _sleep_until(first_at + index * interval)
            self._event(chunk({"content": token}))
            record["completion_tokens"] = index + 1
        self._event(chunk({}, finish_reason))
        if include_usage:
            self._event({**meta, "object": "chat.completion.chunk", "choices": [], "usage": usage})
        self._write_chunk(b"data: [DONE]\n\n")
        self._write_chunk(b"")  # the last chunk of the chunked body
        record["outcome"] = "completed"

    def _event(self, event: dict[str, Any]) -> None:
        self._write_chunk(b"data: " + json.dumps(event, ensure_ascii=False).encode() + b"\n\n")

    def _write_chunk(self, data: bytes) -> None:
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        except OSError as exc:
            raise _ClientGone() from exc

    def _cut(self) -> None:
        """Drop the connection mid-body, the way a crashed or restarted server does."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _unauthorized() -> StandinError:
    return StandinError(401, "Incorrect API key provided (STAND-IN).", type_="invalid_request_error",
                        code="invalid_api_key")


def _sleep_until(deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)


def main(argv: list[str] | None = None) -> None:
    env = os.environ.get
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default=env("LLM_STANDIN_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env("LLM_STANDIN_PORT", str(DEFAULT_PORT))))
    parser.add_argument("--model", default=env("LLM_STANDIN_MODEL", DEFAULT_MODEL))
    parser.add_argument("--reply-file", type=Path, default=env("LLM_STANDIN_REPLY_FILE") or None)
    parser.add_argument("--first-token-delay", type=float,
                        default=float(env("LLM_STANDIN_FIRST_TOKEN_DELAY", "0.3")), help="seconds")
    parser.add_argument("--tokens-per-second", type=float, default=float(env("LLM_STANDIN_TOKENS_PER_SECOND", "20")))
    parser.add_argument("--fault", choices=FAULTS, default=env("LLM_STANDIN_FAULT") or None,
                        help="inject this fault into every request")
    args = parser.parse_args(argv)
    # Keys only from the environment (or a file it names): a command line shows in `ps`.
    keys = env("LLM_STANDIN_API_KEYS", "")
    if env("LLM_STANDIN_API_KEYS_FILE"):
        keys += "," + Path(env("LLM_STANDIN_API_KEYS_FILE", "")).read_text(encoding="utf-8")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    standin = LLMStandin(
        read_reply_file(args.reply_file) if args.reply_file else None,
        host=args.host,
        port=args.port,
        model=args.model,
        api_keys=[key.strip() for key in keys.replace("\n", ",").split(",") if key.strip()],
        first_token_delay=args.first_token_delay,
        tokens_per_second=args.tokens_per_second,
        fault=args.fault,
    )
    url = standin.start()
    log.info("STAND-IN LLM (scripted replies, not a model) on %s/v1: model %s, first token after %.3f s, "
             "%.1f tokens/s, %d repl%s, API key %s%s", url, standin.model, standin.first_token_delay,
             standin.tokens_per_second, len(standin.replies), "y" if len(standin.replies) == 1 else "ies",
             "required" if standin.api_keys else "not required", f", fault {standin.fault}" if standin.fault else "")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        standin.stop()


if __name__ == "__main__":
    main()
