"""A conversation on talker's `/v1/chat/ws` with the standard library alone (RFC 6455, client side).

    with ChatConnection.open("http://talker:8000", api_key=ClientKey(...)) as chat:
        turn = chat.turn("What is the weather today?")     # user_text -> every event until its turn_end
        turn.outcome, turn.reply, turn.audio_bytes, turn.timings["llm_ttft"]

`make smoke FAULT=1`'s LLM drill drives chat turns with it from the relay image, which has no WebSocket
package. The API key, when one is configured, travels in the `talker.key.<key>` subprotocol next to
`talker.chat` (services/talker/README.md), never in the URL; it is never printed. Text frames are JSON events,
binary frames media; pings are answered. One turn at a time per connection.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import struct
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from stack.api_key import ClientKey

SUBPROTOCOL = "talker.chat"
CHAT_PATH = "/v1/chat/ws"
_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
_TEXT, _BINARY, _CLOSE, _PING, _PONG, _CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class ChatError(Exception):
    """The conversation could not be held: refused handshake, closed socket, no answer in time."""


@dataclass
class Turn:
    """What one user turn brought back (events of other turns are not counted)."""

    outcome: str = ""  # turn_end's outcome: completed, llm_error, refused, ...
    reply: str = ""  # the reply_delta texts joined
    audio_bytes: int = 0  # binary media bytes
    timings: dict[str, float] = field(default_factory=dict)  # turn_end's timings (seconds)
    errors: list[dict[str, Any]] = field(default_factory=list)  # error events of the turn

    def describe(self) -> str:
        """One line for a person: the outcome and, for a failed turn, the first error's text."""
        first = self.errors[0] if self.errors else {}
        detail = f": {first.get('error')} ({first.get('detail')})" if first else ""
        return f"{self.outcome or 'no turn_end'}{detail}"


class ChatConnection:
    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self._sock, self._buffer, self.timeout = sock, b"", timeout

    @classmethod
    def open(cls, base_url: str, api_key: ClientKey | None = None, timeout: float = 30.0) -> ChatConnection:
        """Connect to `base_url` (talker's http:// address) and upgrade to the conversation WebSocket."""
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ChatError(f"expected talker's http:// base URL, got {base_url!r}")
        host, port = parts.hostname, parts.port or 80
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise ChatError(f"cannot connect to {host}:{port}: {exc}") from None
        connection = cls(sock, timeout)
        try:
            connection._handshake(parts.netloc, api_key)
        except BaseException:
            sock.close()
            raise
        return connection

    def _handshake(self, netloc: str, api_key: ClientKey | None) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        protocols = [SUBPROTOCOL] + ([f"talker.key.{api_key.value}"] if api_key is not None and api_key.value else [])
        request = (f"GET {CHAT_PATH} HTTP/1.1\r\nHost: {netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                   f"Sec-WebSocket-Protocol: {', '.join(protocols)}\r\n\r\n")
        self._send_raw(request.encode())
        while b"\r\n\r\n" not in self._buffer:
            if len(self._buffer) > 65536:
                raise ChatError("handshake answer too long")
            self._fill()
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {name.strip().lower(): value.strip() for name, _, value in (h.partition(":") for h in header_lines)}
        if status_line.split(" ")[1:2] != ["101"]:
            # The key is in our request, never in the answer: the status line is safe to show.
            raise ChatError(f"GET {CHAT_PATH} refused the WebSocket upgrade: {status_line}"
                            + (" (API key missing or wrong?)" if " 403" in status_line or " 401" in status_line
                               else ""))
        expected = base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()  # noqa: S324 - RFC 6455
        if headers.get("sec-websocket-accept") != expected:
            raise ChatError("the server's Sec-WebSocket-Accept does not match the key sent")

    # -- frames ----------------------------------------------------------------------------------------
    def _send_raw(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise ChatError(f"send failed: {exc}") from None

    def _fill(self) -> None:
        try:
            chunk = self._sock.recv(65536)
        except TimeoutError:
            raise ChatError(f"nothing received for {self.timeout:g} s") from None
        except OSError as exc:
            raise ChatError(f"receive failed: {exc}") from None
        if not chunk:
            raise ChatError("the server closed the connection")
        self._buffer += chunk

    def _read(self, n: int) -> bytes:
        while len(self._buffer) < n:
            self._fill()
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)  # a client masks every frame (RFC 6455 5.3)
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
        elif length < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self._send_raw(header + mask + masked)

    def _read_frame(self) -> tuple[bool, int, bytes]:
        first, second = self._read(2)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", self._read(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", self._read(8))[0]
        if length > MAX_MESSAGE_BYTES:
            raise ChatError(f"a frame of {length} bytes")
        mask = self._read(4) if second & 0x80 else b""
        payload = self._read(length)
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return bool(first & 0x80), first & 0x0F, payload

    def receive(self) -> str | bytes:
        """The next message: text (str) or binary (bytes). Pings are answered; a close frame is a ChatError."""
        opcode, parts = None, []
        while True:
            final, frame_opcode, payload = self._read_frame()
            if frame_opcode == _PING:
                self._send_frame(_PONG, payload)
                continue
            if frame_opcode == _PONG:
                continue
            if frame_opcode == _CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                raise ChatError(f"the server closed the conversation (code {code}: "
                                f"{payload[2:].decode('utf-8', 'replace') or '-'})")
            if frame_opcode != _CONTINUATION:
                opcode = frame_opcode
            parts.append(payload)
            if final:
                data = b"".join(parts)
                return data.decode("utf-8") if opcode == _TEXT else data

    def send(self, **message: Any) -> None:
        self._send_frame(_TEXT, json.dumps(message, ensure_ascii=False).encode("utf-8"))

    def turn(self, text: str) -> Turn:
        """Send one typed user turn and read until its turn_end."""
        self.send(type="user_text", text=text)
        result, number = Turn(), None
        while True:
            message = self.receive()
            if isinstance(message, bytes):
                result.audio_bytes += len(message)
                continue
            event = json.loads(message)
            kind = event.get("type")
            if kind == "turn_start":
                number = event.get("turn")
            elif event.get("turn") is not None and number is not None and event["turn"] != number:
                continue
            elif kind == "reply_delta":
                result.reply += str(event.get("text", ""))
            elif kind == "error":
                result.errors.append(event)
            elif kind == "turn_end":
                result.outcome = str(event.get("outcome", ""))
                result.timings = {k: float(v) for k, v in (event.get("timings") or {}).items() if v is not None}
                return result

    def close(self) -> None:
        try:
            self._send_frame(_CLOSE, struct.pack("!H", 1000))
        except ChatError:
            pass
        finally:
            self._sock.close()

    def __enter__(self) -> ChatConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
