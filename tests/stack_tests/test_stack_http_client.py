"""stack.http_client against a real local HTTP server: JSON both ways, errors as answers, silence as RequestFailed."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from stack.http_client import RequestFailed, get_json, get_text, http_status, request, request_json
from stack.procs import free_port


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def _answer(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/metrics":
            self._answer(200, b"up 1\n", "text/plain")
        elif self.path == "/headers":
            self._answer(200, json.dumps(dict(self.headers)).encode())
        else:
            self._answer(404, b'{"error": "not found"}')

    def do_POST(self) -> None:
        sent = self.rfile.read(int(self.headers["Content-Length"]))
        self._answer(201, json.dumps({"got": json.loads(sent), "type": self.headers["Content-Type"]}).encode())


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_json_goes_out_and_comes_back(base: str) -> None:
    status, body = request_json("POST", f"{base}/echo", {"text": "你好"})
    assert status == 201 and body == {"got": {"text": "你好"}, "type": "application/json"}
    assert get_json(f"{base}/headers", headers={"Authorization": "Bearer t"})["Authorization"] == "Bearer t"


def test_an_error_status_is_an_answer_but_not_what_get_requires(base: str) -> None:
    assert request_json("GET", f"{base}/nope") == (404, {"error": "not found"})
    assert http_status(f"{base}/nope") == 404
    with pytest.raises(RequestFailed, match=r"GET .*/nope: HTTP 404"):
        get_json(f"{base}/nope")
    with pytest.raises(RequestFailed, match="HTTP 404"):
        get_text(f"{base}/nope")
    assert get_text(f"{base}/metrics") == "up 1\n"


def test_first_bytes_are_reported_and_kept(base: str) -> None:
    seen: list[bool] = []
    reply = request("GET", f"{base}/metrics", on_first_bytes=lambda: seen.append(True))
    assert seen == [True] and reply.text == "up 1\n"


def test_nothing_listening_raises_request_failed_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/x"
    assert http_status(url) == 0
    with pytest.raises(RequestFailed, match=f"POST {url}"):
        request("POST", url, {"a": 1}, timeout=2)
