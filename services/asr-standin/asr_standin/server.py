"""ASR STAND-IN: OpenAI's documented speech-to-text endpoint answering a scripted transcript.

STDLIB ONLY so it runs in any Python image as the demo's "remote ASR":

    python -m asr_standin --host 0.0.0.0 --port 8090 --transcript "what is the weather today" [--api-key KEY]
    ASR_STANDIN_TRANSCRIPT="..." ASR_STANDIN_API_KEY=... python -m asr_standin

or in-process in tests: ``AsrStandin(transcripts=["hello"], api_key="k").start() -> base_url``.

Contract (the subset of https://platform.openai.com/docs/api-reference/audio/createTranscription that
OpenAI-compatible servers share):
- POST /v1/audio/transcriptions, multipart/form-data: `file` (required), `model` (required), `language`,
  `prompt`, `temperature`, `response_format` json (default) | text | verbose_json. Other formats (srt, vtt) -> 400.
- json -> {"text": ...}; text -> the transcript as text/plain; verbose_json -> {"task": "transcribe", "language",
  "duration", "text", "segments": [one segment]}. `duration` is the uploaded WAV's length when the file is WAV,
  else 0.0 (the stand-in decodes nothing).
- The transcript: the scripted ones in turn (the last one repeats), or `transcript_for(filename, audio_bytes)`
  when given (tests: choose the answer by the upload).
- When an API key is configured: `Authorization: Bearer KEY` or 401 (OpenAI's error shape).
- Errors use OpenAI's shape {"error": {"message", "type", "param", "code"}}; body over MAX_UPLOAD_BYTES -> 413.
Every answer carries `X-Stand-In: asr-standin`: this is not a speech recogniser.
Test hooks: GET /api/requests (one record per transcription call: model, language, response_format, filename,
bytes, authorized — never the key), DELETE /api/requests, POST /api/faults {"http_status": 500, "count": 1} or
{"hang": true, "count": 1} (hold the answer until the fault is cleared or the stand-in stops: a client timeout),
DELETE /api/faults, POST /api/transcripts {"transcripts": [...]}.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import threading
import wave
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

# Where `python -m asr_standin` listens by default.
DEFAULT_PORT = 8090
DEFAULT_TRANSCRIPT = "hello this is the speech recognition stand-in"
# OpenAI's documented upload limit for /v1/audio/transcriptions.
MAX_UPLOAD_BYTES = 25 * 1024 * 1024
RESPONSE_FORMATS = ("json", "text", "verbose_json")
STANDIN_HEADER = ("X-Stand-In", "asr-standin")


@dataclass
class _Fault:
    http_status: int | None
    hang: bool
    remaining: int


class AsrStandin:
    def __init__(
        self,
        transcripts: list[str] | None = None,
        *,
        api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        transcript_for: Callable[[str, bytes], str] | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.api_key = api_key or None
        self.transcript_for = transcript_for
        self._transcripts = list(transcripts or [DEFAULT_TRANSCRIPT])
        self._served = 0
        self._lock = threading.Lock()
        self._requests: list[dict[str, Any]] = []
        self._fault: _Fault | None = None
        self._release = threading.Event()  # set: hanging answers go on (fault cleared or stopping)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------------------
    def start(self) -> str:
        standin = self

        class Handler(_Handler):
            owner = standin

        self._release.clear()
        self._server = _Server((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="asr-standin", daemon=True
        )
        self._thread.start()
        return self.base_url

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> AsrStandin:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test hooks ---------------------------------------------------------------------------------------
    @property
    def requests(self) -> list[dict[str, Any]]:
        """One record per POST /v1/audio/transcriptions, answered or not."""
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    def set_transcripts(self, transcripts: list[str]) -> None:
        if not transcripts or not all(isinstance(t, str) for t in transcripts):
            raise ValueError("transcripts must be a non-empty list of strings")
        with self._lock:
            self._transcripts, self._served = list(transcripts), 0

    def set_fault(self, spec: dict[str, Any]) -> None:
        status, hang, count = spec.get("http_status"), bool(spec.get("hang", False)), spec.get("count", 1)
        if (status is None) == (not hang):
            raise ValueError("give exactly one of http_status, hang")
        if status is not None and not (isinstance(status, int) and 400 <= status <= 599):
            raise ValueError("http_status must be an integer 400..599")
        if not (isinstance(count, int) and count > 0):
            raise ValueError("count must be a positive integer")
        with self._lock:
            self._release.clear()
            self._fault = _Fault(http_status=status, hang=hang, remaining=count)

    def clear_fault(self) -> None:
        with self._lock:
            self._fault = None
        self._release.set()

    def _take_fault(self) -> _Fault | None:
        fault = self._fault
        if fault is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._fault = None
        return fault

    # -- the endpoint -------------------------------------------------------------------------------------
    def handle_transcription(self, headers: Message, body: bytes) -> tuple[int, bytes, str]:
        """(HTTP status, body, content type) for POST /v1/audio/transcriptions."""
        authorized = self.api_key is None or headers.get("Authorization", "") == f"Bearer {self.api_key}"
        record: dict[str, Any] = {"bytes": 0, "authorized": authorized}
        try:
            fields, files = _parse_multipart(headers.get("Content-Type", ""), body)
        except ValueError as exc:
            fields, files = {}, {}
            problem: tuple[int, str, str | None] | None = (400, str(exc), None)
        else:
            problem = None
        upload = files.get("file")
        record.update(
            model=fields.get("model"),
            language=fields.get("language"),
            response_format=fields.get("response_format", "json"),
            filename=upload[0] if upload else None,
            bytes=len(upload[1]) if upload else 0,
        )
        with self._lock:
            self._requests.append(record)
            fault = self._take_fault()
        if not authorized:
            return _error(401, "Incorrect API key provided (ASR stand-in).", None, "invalid_api_key")
        if fault is not None and fault.hang:
            self._release.wait()
        if fault is not None and fault.http_status is not None:
            return _error(fault.http_status, f"injected failure (ASR stand-in fault, HTTP {fault.http_status})", None,
                          "injected_fault")
        if problem is not None:
            return _error(*problem)
        if upload is None:
            return _error(400, "file is required", "file")
        if not fields.get("model"):
            return _error(400, "model is required", "model")
        response_format = fields.get("response_format", "json")
        if response_format not in RESPONSE_FORMATS:
            return _error(400, f"response_format must be one of {', '.join(RESPONSE_FORMATS)} (ASR stand-in)",
                          "response_format")
        filename, audio = upload
        text = self._next_transcript(filename, audio)
        if response_format == "text":
            return 200, text.encode(), "text/plain; charset=utf-8"
        if response_format == "json":
            return 200, _json({"text": text}), "application/json"
        duration = _wav_seconds(audio)
        return 200, _json({
            "task": "transcribe",
            "language": fields.get("language") or "english",
            "duration": duration,
            "text": text,
            "segments": [{"id": 0, "seek": 0, "start": 0.0, "end": duration, "text": text, "tokens": [],
                          "temperature": 0.0, "avg_logprob": 0.0, "compression_ratio": 1.0, "no_speech_prob": 0.0}],
        }), "application/json"

    def _next_transcript(self, filename: str, audio: bytes) -> str:
        if self.transcript_for is not None:
            return self.transcript_for(filename, audio)
        with self._lock:
            text = self._transcripts[min(self._served, len(self._transcripts) - 1)]
            self._served += 1
            return text


def _json(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode()


def _error(status: int, message: str, param: str | None, code: str | None = None) -> tuple[int, bytes, str]:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return status, _json({"error": {"message": message, "type": kind, "param": param, "code": code}}), \
        "application/json"


def _parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
    """multipart/form-data -> (text fields, {name: (filename, bytes)})."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise ValueError("Content-Type must be multipart/form-data")
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    if not message.is_multipart():
        raise ValueError("malformed multipart body")
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        if filename is not None:
            files[name] = (filename, data)
        else:
            fields[name] = data.decode("utf-8", errors="replace")
    return fields, files


def _wav_seconds(audio: bytes) -> float:
    try:
        with wave.open(io.BytesIO(audio)) as wav:
            return round(wav.getnframes() / float(wav.getframerate()), 3)
    except (wave.Error, EOFError, ZeroDivisionError):
        return 0.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (its timeout) or closed a kept-alive connection is no error of the stand-in.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    owner: AsrStandin
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send(self, status: int, data: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header(*STANDIN_HEADER)
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout)
            pass

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/healthz":
            self._send(200, _json({"status": "ok", "stand_in": True}))
        elif path == "/api/requests":
            self._send(200, _json(self.owner.requests))
        elif path == "/":
            self._send(200, b"ASR STAND-IN: POST /v1/audio/transcriptions answers a scripted transcript; "
                            b"it recognises nothing.\n", "text/plain; charset=utf-8")
        else:
            self._send(404, _json({"error": {"message": "not found", "type": "invalid_request_error"}}))

    def do_DELETE(self) -> None:
        path = urlsplit(self.path).path
        if path == "/api/requests":
            self.owner.clear()
            self._send(200, _json({"status": "cleared"}))
        elif path == "/api/faults":
            self.owner.clear_fault()
            self._send(200, _json({"status": "cleared"}))
        else:
            self._send(404, _json({"error": {"message": "not found", "type": "invalid_request_error"}}))

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        if path == "/v1/audio/transcriptions" and length > MAX_UPLOAD_BYTES:
            self.close_connection = True
            self._send(*_error(413, f"file over {MAX_UPLOAD_BYTES} bytes (ASR stand-in)", "file"))
            return
        body = self._body()
        if path == "/v1/audio/transcriptions":
            self._send(*self.owner.handle_transcription(self.headers, body))
            return
        try:
            spec = json.loads(body or b"{}")
            if path == "/api/faults":
                self.owner.set_fault(spec)
            elif path == "/api/transcripts":
                self.owner.set_transcripts(spec.get("transcripts"))
            else:
                self._send(404, _json({"error": {"message": "not found", "type": "invalid_request_error"}}))
                return
        except (ValueError, AttributeError) as exc:
            self._send(422, _json({"error": "invalid", "detail": str(exc)}))
            return
        self._send(200, _json({"status": "set"}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--transcript", action="append", default=[],
                        help="the scripted transcript (repeatable: answered in turn, the last one repeats); "
                             "default $ASR_STANDIN_TRANSCRIPT")
    parser.add_argument("--api-key", default=None, help="require this bearer key (default $ASR_STANDIN_API_KEY)")
    args = parser.parse_args(argv)
    transcripts = args.transcript or [os.environ.get("ASR_STANDIN_TRANSCRIPT") or DEFAULT_TRANSCRIPT]
    standin = AsrStandin(transcripts, api_key=args.api_key or os.environ.get("ASR_STANDIN_API_KEY"),
                         host=args.host, port=args.port)
    url = standin.start()
    print(f"ASR STAND-IN (scripted transcripts, no recognition) on {url}"
          f"{' with a bearer key' if standin.api_key else ''}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        standin.stop()


if __name__ == "__main__":
    main()
