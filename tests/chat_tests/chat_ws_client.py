"""A conversation client as the tests see /v1/chat/ws: a real WebSocket (the `websockets` package), each frame
stamped with its arrival time, and the talker + LLM stand-in it talks to."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from llm_standin.server import LLMStandin
from talker_app_tests.talker_server import TalkerServer
from websockets.sync.client import ClientConnection, connect

API_KEY = "chat-key-3c9a1e"
SUBPROTOCOL = "talker.chat"


@dataclass
class Frame:
    at: float  # perf_counter on arrival
    event: dict[str, Any] | None = None  # a JSON message
    data: bytes | None = None  # a binary (media) frame

    @property
    def type(self) -> str:
        return "binary" if self.event is None else str(self.event.get("type"))


@dataclass
class ChatStack:
    talker: TalkerServer
    llm: LLMStandin

    @property
    def ws_url(self) -> str:
        return self.talker.url.replace("http://", "ws://") + "/v1/chat/ws"

    def connect(self, *, key: str | None = API_KEY, origin: str | None = None,
                subprotocols: list[str] | None = None) -> ChatClient:
        offered = subprotocols if subprotocols is not None else (
            [SUBPROTOCOL] + ([f"talker.key.{key}"] if key is not None else []))
        headers = {"Origin": origin} if origin is not None else None
        ws = connect(self.ws_url, subprotocols=offered or None, additional_headers=headers, open_timeout=10,
                     max_size=None)
        return ChatClient(ws)


class ChatClient:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    def __enter__(self) -> ChatClient:
        self.ws.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.ws.__exit__(None, None, None)

    def send(self, **message: Any) -> float:
        self.ws.send(json.dumps(message))
        return time.perf_counter()

    def send_raw(self, raw: str | bytes) -> None:
        self.ws.send(raw)

    def recv(self, timeout: float = 30.0) -> Frame:
        message = self.ws.recv(timeout=timeout)
        at = time.perf_counter()
        if isinstance(message, bytes):
            return Frame(at, data=message)
        return Frame(at, event=json.loads(message))

    def until(self, kind: str, timeout: float = 60.0) -> list[Frame]:
        """Every frame up to and including the first of type `kind`."""
        deadline = time.perf_counter() + timeout
        frames: list[Frame] = []
        while True:
            frame = self.recv(timeout=max(0.1, deadline - time.perf_counter()))
            frames.append(frame)
            if frame.type == kind:
                return frames

    def turn(self, text: str, timeout: float = 60.0) -> tuple[float, list[Frame]]:
        """Send user_text; (when it was sent, every frame up to its turn_end)."""
        sent = self.send(type="user_text", text=text)
        return sent, self.until("turn_end", timeout)
