"""`GET /v1/chat/ws`: the conversation WebSocket. Parses messages, sends events; TalkerService.chat owns turns.

Protocol (services/talker/README.md, "Conversation: /v1/chat/ws"): JSON text messages both ways, binary frames
for media. A recoverable error (malformed JSON, unknown type, a bad or oversized field, a failed stage) is an
`error` event and the socket stays open; only a refused Origin or API key ends the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from talker.audio_input import AudioInputError, InputFormat, check_input_bytes, parse_input_format
from talker.chat import CHAT_ROUTE, ClientGone, TurnOptions, TurnOutput, TurnTimings
from talker.errors import refusal_error
from talker.metrics import RejectReason
from talker.refusals import Refusal
from talker.service import TalkerService

log = logging.getLogger("talker.chat_ws")
router = APIRouter()

# The subprotocol a browser offers to name this protocol, and the prefix of the entry that carries an API key
# (browsers cannot set headers on a WebSocket): new WebSocket(url, ["talker.chat", "talker.key." + key]).
SUBPROTOCOL = "talker.chat"
KEY_SUBPROTOCOL_PREFIX = "talker.key."
MAX_MESSAGE_CHARS = 16_384  # one JSON message; text fields have their own, smaller bounds
MAX_ID_CHARS = 128  # voice, avatar, emotion, session_id, format
AUTH_TIMEOUT_S = 10.0  # the first message must authenticate within this when keys are set and none came
CLOSE_POLICY = 1008  # policy violation: a refused key
CLOSE_UNAUTHENTICATED = 4401
CLOSE_SLOW_READER = 1013  # try again later: the client read nothing for TALKER_STREAM_WRITE_TIMEOUT_S


class BadMessage(Exception):
    def __init__(self, error: str, detail: str, field: str | None = None) -> None:
        super().__init__(error)
        self.event: dict[str, Any] = {"type": "error", "error": error, "detail": detail}
        if field is not None:
            self.event["field"] = field


def parse_message(raw: str) -> dict[str, Any]:
    if len(raw) > MAX_MESSAGE_CHARS:
        raise BadMessage("message too large", f"a message may have at most {MAX_MESSAGE_CHARS} characters")
    try:
        message = json.loads(raw)
    except ValueError as exc:
        raise BadMessage("malformed message", f"not valid JSON (at character {getattr(exc, 'pos', 0)})") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise BadMessage("malformed message", "a message is a JSON object with a string \"type\"", "type")
    return message


def text_field(message: dict[str, Any], name: str, max_chars: int, *, required: bool = False) -> str | None:
    value = message.get(name)
    if value is None:
        if required:
            raise BadMessage(f"missing {name}", f"\"{name}\" is required", name)
        return None
    if not isinstance(value, str):
        raise BadMessage(f"invalid {name}", f"\"{name}\" must be a string", name)
    value = value.strip()
    if required and not value:
        raise BadMessage(f"missing {name}", f"\"{name}\" must not be empty", name)
    if len(value) > max_chars:
        raise BadMessage(f"{name} too long", f"\"{name}\" may have at most {max_chars} characters", name)
    return value


@dataclass
class SpokenInput:
    format: InputFormat
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    refused: bool = False  # over the byte bound: the rest is dropped, user_audio_end answers nothing


class ChatConnection:
    """One socket: its sender (one writer at a time), its session and options, the turn in progress."""

    def __init__(self, websocket: WebSocket, service: TalkerService) -> None:
        self.ws = websocket
        self.service = service
        self.chat = service.chat
        self._send_lock = asyncio.Lock()
        self.session = None
        self.options = TurnOptions()
        self.turn: asyncio.Task[str] | None = None
        self.turn_id = 0
        self.gone = False  # a send failed or timed out: nothing more is sent
        self.audio: SpokenInput | None = None  # spoken input arriving (between user_audio_start and _end)

    async def send(self, event: dict[str, Any]) -> None:
        await self._send_frame(json.dumps(event, ensure_ascii=False))

    async def send_media(self, data: bytes) -> None:
        await self._send_frame(data)

    async def _send_frame(self, frame: str | bytes) -> None:
        """One frame, one writer at a time; ClientGone when the client is gone or took nothing for
        TALKER_STREAM_WRITE_TIMEOUT_S (the socket is then closed, and the turn with it)."""
        async with self._send_lock:
            if self.gone:
                raise ClientGone()
            send = self.ws.send_text(frame) if isinstance(frame, str) else self.ws.send_bytes(frame)
            try:
                await asyncio.wait_for(send, self.chat.write_timeout_s)
            except TimeoutError:
                self.gone = True
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.ws.close(CLOSE_SLOW_READER), 1.0)
                raise ClientGone() from None
            except (WebSocketDisconnect, RuntimeError, OSError) as exc:
                self.gone = True
                raise ClientGone() from exc

    def refusal_event(self, exc: Refusal) -> dict[str, Any]:
        """The error body of a Refusal as an error event (with the HTTP status it stands for); counted."""
        error = refusal_error(exc)
        if error.reason is not None:
            self.service.count_rejection(error.reason)
        event = {"type": "error", **error.body, "status": error.status}
        if exc.retry_after_s is not None:
            event["retry_after_s"] = exc.retry_after_s  # HTTP's Retry-After
        return event

    async def refused(self, exc: Refusal) -> None:
        await self.send(self.refusal_event(exc))

    def ensure_session(self, requested: str | None = None) -> Any:
        if self.session is None or requested is not None:
            self.session = self.chat.open_session(requested)
        return self.session

    async def configure(self, message: dict[str, Any]) -> None:
        fields = {name: text_field(message, name, MAX_ID_CHARS) for name in ("voice", "emotion", "avatar", "output")}
        session_id = text_field(message, "session_id", MAX_ID_CHARS)
        try:
            self.options = self.chat.turn_options(**fields)
        except Refusal as exc:
            await self.refused(exc)
            return
        session = self.ensure_session(session_id)
        await self.send({"type": "ready", "session_id": session.session_id, "output": self.options.output,
                         "voice": self.options.voice, "avatar": self.options.avatar})

    async def cancel_turn(self) -> None:
        """Barge-in: stop the turn still answering (LLM stream closed, speech stopped) before the next starts."""
        turn, self.turn = self.turn, None
        if turn is not None and not turn.done():
            turn.cancel()
            with contextlib.suppress(BaseException):
                await turn

    async def start_turn(self, run: Callable[[TurnOutput, TurnTimings], Awaitable[str]], *, source: str,
                         ended_at: float) -> None:
        await self.cancel_turn()
        session = self.ensure_session()
        self.turn_id += 1
        turn_id = self.turn_id

        async def event(message: dict[str, Any]) -> None:
            await self.send({**message, "turn": turn_id})

        async def refused(exc: Refusal) -> None:
            await event(self.refusal_event(exc))

        await event({"type": "turn_start", "input": source, "session_id": session.session_id})
        out = TurnOutput(event=event, media=self.send_media, refused=refused)
        self.turn = asyncio.ensure_future(run(out, TurnTimings(ended_at=ended_at)))

    async def on_text(self, message: dict[str, Any]) -> None:
        text = text_field(message, "text", self.chat.max_text_chars, required=True)
        assert text is not None
        session, options = self.ensure_session(), self.options
        await self.start_turn(
            lambda out, timings: self.chat.answer(session, text, options, out, source="text", timings=timings),
            source="text", ended_at=time.perf_counter())

    # --- spoken input: user_audio_start, binary frames, user_audio_end ------------------------------------
    async def on_audio_start(self, message: dict[str, Any]) -> None:
        fmt_text = text_field(message, "format", MAX_ID_CHARS, required=True)
        rate = message.get("pcm_rate")
        try:
            fmt = parse_input_format(fmt_text or "", pcm_rate=rate if isinstance(rate, int) else None)
        except AudioInputError as exc:
            raise BadMessage("invalid format", exc.detail, exc.field) from None
        await self.cancel_turn()  # the user speaks again: barge-in now, not when they stop
        self.audio = SpokenInput(fmt)

    async def on_audio_frame(self, data: bytes) -> None:
        audio = self.audio
        if audio is None:
            raise BadMessage("unexpected binary frame", "binary frames are only accepted after user_audio_start")
        if audio.refused:
            return  # the rest of an input already refused
        audio.chunks.append(data)
        audio.size += len(data)
        try:
            check_input_bytes(audio.size, self.chat.input_limits)
        except AudioInputError as exc:
            audio.refused, audio.chunks = True, []
            self.service.count_rejection(RejectReason.INVALID)
            self.chat.count_turn("audio", "invalid")
            await self.send({"type": "error", "error": "invalid audio", "field": exc.field, "detail": exc.detail,
                             "kind": exc.kind, "status": 413})

    async def on_audio_end(self) -> None:
        audio, self.audio = self.audio, None
        if audio is None:
            raise BadMessage("unexpected user_audio_end", "send user_audio_start and the audio first")
        if audio.refused:
            return
        data, session, options = b"".join(audio.chunks), self.ensure_session(), self.options
        await self.start_turn(
            lambda out, timings: self.chat.answer_spoken(session, data, audio.format, options, out, timings=timings),
            source="audio", ended_at=time.perf_counter())

    async def handle(self, raw: str) -> None:
        message = parse_message(raw)
        kind = message["type"]
        if kind == "config":
            await self.configure(message)
        elif kind == "user_text":
            await self.on_text(message)
        elif kind == "user_audio_start":
            await self.on_audio_start(message)
        elif kind == "user_audio_end":
            await self.on_audio_end()
        elif kind == "auth":
            pass  # already authenticated (or keys are off): a repeated auth message changes nothing
        else:
            raise BadMessage("unknown type", f"unknown message type; use one of {', '.join(MESSAGE_TYPES)}",
                             "type")


MESSAGE_TYPES = ("auth", "config", "user_text", "user_audio_start", "user_audio_end")


def key_from_subprotocols(offered: list[str]) -> str | None:
    for entry in offered:
        if entry.startswith(KEY_SUBPROTOCOL_PREFIX):
            return entry[len(KEY_SUBPROTOCOL_PREFIX):]
    return None


async def authenticate_by_message(websocket: WebSocket, service: TalkerService) -> bool:
    """Keys are set and no subprotocol carried one: the first message must be {"type":"auth","api_key":...}."""
    try:
        raw = await asyncio.wait_for(websocket.receive_text(), AUTH_TIMEOUT_S)
        message = parse_message(raw)
    except (TimeoutError, BadMessage, KeyError):
        message = {}
    given = message.get("api_key") if message.get("type") == "auth" else None
    if isinstance(given, str) and service.accepts_api_key(given):
        return True
    service.count_rejection(RejectReason.UNAUTHORIZED)
    missing = not isinstance(given, str)
    await websocket.send_text(json.dumps({
        "type": "error", "error": "unauthorized" if missing else "forbidden",
        "detail": "send {\"type\":\"auth\",\"api_key\":...} first, or the subprotocol talker.key.<key>"
        if missing else "unknown API key",
        "status": 401 if missing else 403,
    }))
    await websocket.close(CLOSE_UNAUTHENTICATED if missing else CLOSE_POLICY)
    return False


@router.websocket(CHAT_ROUTE)
async def chat_ws(websocket: WebSocket) -> None:
    service: TalkerService = websocket.app.state.service
    if not service.chat_origin_allowed(websocket.headers.get("origin"), websocket.headers.get("host")):
        service.count_rejection(RejectReason.UNAUTHORIZED)
        await websocket.close(CLOSE_POLICY)  # before accept: the handshake is answered 403
        return
    offered = list(websocket.scope.get("subprotocols") or [])
    key = key_from_subprotocols(offered)
    if service.api_keys_required and key is not None and not service.accepts_api_key(key):
        service.count_rejection(RejectReason.UNAUTHORIZED)
        await websocket.close(CLOSE_POLICY)
        return
    # Never echo the key entry: choose the protocol name when offered, else none.
    await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    if service.api_keys_required and key is None and not await authenticate_by_message(websocket, service):
        return
    conn = ChatConnection(websocket, service)
    service.chat.session_opened()
    try:
        while True:
            frame = await websocket.receive()
            if frame["type"] == "websocket.disconnect":
                break
            try:
                if frame.get("text") is None:
                    await conn.on_audio_frame(frame.get("bytes") or b"")
                else:
                    await conn.handle(frame["text"])
            except BadMessage as exc:
                service.count_rejection(RejectReason.INVALID)
                await conn.send(exc.event)
    except (WebSocketDisconnect, ClientGone):
        pass
    finally:
        await conn.cancel_turn()
        service.chat.session_closed()
