"""A conversation turn without HTTP: the user's text -> LLM deltas -> sentences -> streaming TTS -> media.

The WebSocket route (chat_ws.py) parses messages and sends what a turn emits; `Conversation` (one per
app, reached through `TalkerService.chat`) owns the turn:

    conversation = service.chat
    session = conversation.open_session(requested_id)
    options = conversation.turn_options(voice=..., emotion=..., avatar=..., output="audio")  # Refusal if bad
    await conversation.answer(session, text, options, out, source="text", ended_at=time.perf_counter())

`out` (TurnOutput) takes events (dicts) and media (bytes). The answer is pipelined: each LLM delta is sent as a
`reply_delta` at once and fed to the sentence cutter; a speaker task turns each finished sentence into a
speech stream (TalkerService.speech_stream) while the LLM goes on. Cancelling `answer` (barge-in) closes the
LLM's HTTP stream and the speech stream; nothing more is emitted for that turn.

Slots: a turn takes ONE synthesis slot (TalkerService.hold_slot) after admission and before the LLM is asked,
and every sentence's stream runs in it; it is released when the turn ends (turn_end, barge-in, an error, the
client gone), exactly once. So the limiter counts producing turns: a full limiter refuses a turn up front
(429 event, no LLM tokens spent, nothing said), never between two sentences of an answer. Taken at the start
rather than at the first sentence because a turn refused after its first reply_delta would be refused
mid-answer, with the LLM's tokens already paid for; the price is a slot idle while the LLM thinks (bounded by
TALKER_LLM_TIMEOUT_S). Spoken input is recognised before the answer takes its slot (pocketsphinx recognises one
utterance at a time anyway), so the user sees what was heard even when the answer is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from talker.animator.stream_encode import MIME_TYPE as FMP4_MIME_TYPE
from talker.asr import AsrError, SpeechToText
from talker.audio_formats import PCM_RATE
from talker.audio_input import AudioInputError, InputFormat, InputLimits
from talker.chat_sessions import ChatSession, ChatSessionStore
from talker.limiter import HeldSlot
from talker.llm import LLMClient, LLMConfig, LLMError
from talker.metrics import CHAT_INPUTS, CHAT_TURN_OUTCOMES, TalkerMetrics
from talker.refusals import Refusal, RefusalKind
from talker.sentences import SentenceCutter
from talker.settings import Settings
from talker.streaming import OpenStream

if TYPE_CHECKING:
    from talker.service import TalkerService

log = logging.getLogger("talker.chat")
CHAT_ROUTE = "/v1/chat/ws"
OUTPUTS: tuple[str, ...] = ("audio", "video")
# How audio media is sent: raw PCM, as OpenAI's `pcm` response format (audio_formats.PcmEncoder).
# Video: fragmented MP4 (H.264 + AAC), one per sentence; `mime_type` is what MSE's addSourceBuffer needs.
VIDEO_MEDIA: dict[str, Any] = {"type": "media", "kind": "video", "format": "fmp4", "mime_type": FMP4_MIME_TYPE}
# A barge-in's stopped sentence returns its thread within one unit of synthesis; the turn waits at most this
# for it before it ends, so the next turn (often the same user's) finds the slot free rather than refused.
SLOT_DRAIN_S = 2.0
AUDIO_MEDIA: dict[str, Any] = {"type": "media", "kind": "audio", "format": "pcm_s16le", "sample_rate": PCM_RATE,
                               "channels": 1}


class ClientGone(Exception):
    """The client went away while a turn was sending (TurnOutput raises it): the turn is cancelled."""


@dataclass(frozen=True)
class TurnOptions:
    voice: str | None = None
    emotion: str = "neutral"
    avatar: str | None = None
    output: str = "audio"


@dataclass
class TurnOutput:
    """Where a turn's events and media go (the route's WebSocket sender); each raises ClientGone once the
    client is gone."""

    event: Callable[[dict[str, Any]], Awaitable[None]]
    media: Callable[[bytes], Awaitable[None]]
    refused: Callable[[Refusal], Awaitable[None]]  # an error event in the error body's shape, counted


@dataclass
class TurnTimings:
    ended_at: float  # perf_counter at the end of the user's turn
    asr: float | None = None
    llm_ttft: float | None = None
    llm: float | None = None
    tts_first_audio: float | None = None
    first_audio: float | None = None
    total: float | None = None
    extra: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        names = ("asr", "llm_ttft", "llm", "tts_first_audio", "first_audio", "total")
        return {name: round(value, 4) for name in names if (value := getattr(self, name)) is not None}


class Conversation:
    def __init__(self, service: TalkerService, settings: Settings, metrics: TalkerMetrics) -> None:
        self._service = service
        self._settings = settings
        self._metrics = metrics
        self.llm = LLMClient(LLMConfig.from_settings(settings), on_result=metrics.observe_llm_result,
                             faults=service.faults)
        self.sessions = ChatSessionStore(
            max_sessions=settings.chat_max_sessions, max_turns=settings.chat_max_turns,
            max_chars=settings.chat_max_history_chars, idle_ttl_s=settings.chat_session_ttl_s,
        )
        self.max_text_chars = settings.max_text_chars
        # A client that takes no message for this long is cut, so a turn never holds a slot for a reader that
        # is gone (TALKER_STREAM_WRITE_TIMEOUT_S, as for HTTP streams).
        self.write_timeout_s = settings.stream_write_timeout_s
        # One line per process (TalkerService.chat is made once: at start-up by warm_up_chat when an LLM is set).
        log.info("conversation ready")

    @functools.cached_property
    def asr(self) -> SpeechToText:
        """Speech to text for spoken turns (pocketsphinx, or TALKER_ASR_BASE_URL): made on first use."""
        return SpeechToText.from_settings(self._settings, self._metrics if self._service.record_metrics else None)

    @property
    def input_limits(self) -> InputLimits:
        return InputLimits.from_settings(self._settings)

    def open_session(self, requested_id: str | None) -> ChatSession:
        return self.sessions.open(requested_id)

    def turn_options(self, *, voice: str | None, emotion: str | None, avatar: str | None,
                     output: str | None) -> TurnOptions:
        """Checked options of a `config` message; raises Refusal naming the first bad field."""
        output = output or "audio"
        if output not in OUTPUTS:
            raise Refusal(RefusalKind.INVALID, "invalid output", field="output",
                          detail=f"output must be one of {', '.join(OUTPUTS)}", allowed=list(OUTPUTS))
        checked = self._service.speech_request("check", voice=voice, emotion=emotion or "neutral", speed=1.0,
                                               avatar=avatar)
        return TurnOptions(voice=checked.voice, emotion=checked.emotion, avatar=checked.avatar, output=output)

    def session_opened(self) -> None:
        self._metrics.chat_sessions_active.inc()

    def session_closed(self) -> None:
        self._metrics.chat_sessions_active.dec()

    def count_turn(self, source: str, outcome: str) -> None:
        assert source in CHAT_INPUTS and outcome in CHAT_TURN_OUTCOMES, (source, outcome)
        if self._service.record_metrics:
            self._metrics.chat_turns.labels(source, outcome).inc()

    async def aclose(self) -> None:
        await self.llm.aclose()
        if "asr" in self.__dict__:
            await self.asr.aclose()

    # --- one turn ------------------------------------------------------------------------------------
    async def answer(self, session: ChatSession, text: str, options: TurnOptions, out: TurnOutput, *,
                     source: str, timings: TurnTimings) -> str:
        """Answer `text` in `session`: reply deltas, media, then turn_end (or an error event). The outcome.

        CancelledError (barge-in) propagates after the LLM and speech streams are closed; the turn is
        then counted as cancelled and nothing more is sent."""
        try:
            self._service.admit()  # the error_rate fault's pick, engines loaded: before any LLM request
            slot = await self._service.hold_slot()  # one slot for the whole answer, or 429/503 now
        except Refusal as exc:
            self.count_turn(source, "refused")
            await out.refused(exc)
            timings.total = time.perf_counter() - timings.ended_at
            await out.event({"type": "turn_end", "outcome": "refused", "timings": timings.as_dict()})
            return "refused"
        except asyncio.CancelledError:  # barge-in or the client left while the turn waited for a slot
            self.count_turn(source, "cancelled")
            raise
        try:
            outcome = await self._answer_in_slot(session, text, options, out, slot, source=source,
                                                 timings=timings)
        finally:
            # Every way out (done, barge-in, error, the client gone) releases the slot, exactly once (HeldSlot),
            # and waits briefly for a stopped sentence's thread, so the next turn finds it free. Before
            # turn_end is sent: a client that has turn_end can start the next turn at once.
            await slot.close(SLOT_DRAIN_S)
        if outcome == "cancelled":  # the client is gone: nothing more to send
            return outcome
        timings.total = time.perf_counter() - timings.ended_at
        await out.event({"type": "turn_end", "outcome": outcome, "timings": timings.as_dict()})
        return outcome

    async def _answer_in_slot(self, session: ChatSession, text: str, options: TurnOptions, out: TurnOutput,
                              slot: HeldSlot, *, source: str, timings: TurnTimings) -> str:
        """The answer in its held slot: LLM -> sentences -> speech, and the error events. The outcome."""
        outcome = "completed"
        sentences: asyncio.Queue[str | None] = asyncio.Queue()
        reply = self.llm.stream(session.conversation(text))
        writer = asyncio.ensure_future(self._write(reply, sentences, out))
        speaker = asyncio.ensure_future(self._speak(sentences, options, out, timings, slot))
        try:
            done, _ = await asyncio.wait({writer, speaker}, return_when=asyncio.FIRST_EXCEPTION)
            failed = next((task for task in (writer, speaker) if task in done and task.exception()), None)
            if failed is not None:
                raise failed.exception()  # type: ignore[misc]
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except ClientGone:
            outcome = "cancelled"
            return outcome
        except LLMError as exc:
            outcome = "llm_error"
            await out.event({"type": "error", "error": "llm failed", "stage": "llm", "detail": exc.result.detail,
                             "outcome": str(exc.result.outcome)})
        except Refusal as exc:
            outcome = "refused" if exc.kind is not RefusalKind.INVALID else "invalid"
            await out.refused(exc)
        except Exception:
            outcome = "tts_error"
            log.exception("chat turn failed")
            await out.event({"type": "error", "error": "internal error", "detail": "the answer could not be spoken"})
        finally:
            for task in (writer, speaker):
                task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(writer, speaker, return_exceptions=True)
            await reply.aclose()
            self.sessions.record_turn(session, text, reply.result.text)
            result = reply.result
            timings.llm_ttft = result.time_to_first_token_s
            timings.llm = result.duration_s or None
            if result.duration_s and self._service.record_metrics:
                self._metrics.observe_stage("llm", result.duration_s)
            self.count_turn(source, outcome)
        return outcome

    async def answer_spoken(self, session: ChatSession, data: bytes, fmt: InputFormat, options: TurnOptions,
                            out: TurnOutput, *, timings: TurnTimings) -> str:
        """Recognise spoken input (bounded, audio_input.py), send its transcript, then answer it like text."""
        try:
            transcript = await self.asr.transcribe(data, fmt)
        except AudioInputError as exc:
            outcome = "invalid" if exc.client_error else "asr_error"
            event: dict[str, Any] = {"type": "error", "error": "invalid audio" if exc.client_error else "asr failed",
                                     "field": exc.field, "detail": exc.detail, "kind": exc.kind}
            return await self._end_early(out, event, outcome, timings)
        except AsrError as exc:
            event = {"type": "error", "error": "asr failed", "stage": "asr", "detail": exc.detail, "kind": exc.kind}
            return await self._end_early(out, event, "asr_error", timings)
        timings.asr = transcript.asr_seconds
        text = transcript.text.strip()[: self.max_text_chars]
        await out.event({"type": "transcript", "text": text})
        if not text:
            event = {"type": "error", "error": "nothing recognised", "stage": "asr", "field": "audio",
                     "detail": "no words were recognised in the spoken input"}
            return await self._end_early(out, event, "invalid", timings)
        return await self.answer(session, text, options, out, source="audio", timings=timings)

    async def _end_early(self, out: TurnOutput, event: dict[str, Any], outcome: str, timings: TurnTimings) -> str:
        self.count_turn("audio", outcome)
        await out.event(event)
        timings.total = time.perf_counter() - timings.ended_at
        await out.event({"type": "turn_end", "outcome": outcome, "timings": timings.as_dict()})
        return outcome

    async def _write(self, reply: Any, sentences: asyncio.Queue[str | None], out: TurnOutput) -> None:
        """LLM deltas -> reply_delta events and sentences for the speaker."""
        cutter = SentenceCutter(first_max_chars=self._settings.chat_first_sentence_max_chars,
                                max_chars=self._settings.chat_sentence_max_chars)
        try:
            async with reply:
                async for delta in reply:
                    for sentence in cutter.feed(delta):
                        sentences.put_nowait(sentence)
                    await out.event({"type": "reply_delta", "text": delta})
            for sentence in cutter.flush():
                sentences.put_nowait(sentence)
        finally:
            sentences.put_nowait(None)

    async def _speak(self, sentences: asyncio.Queue[str | None], options: TurnOptions, out: TurnOutput,
                     timings: TurnTimings, slot: HeldSlot) -> None:
        """Each sentence through streaming TTS (or talking-head video), in order, sent as it is made.

        Audio: one `media` event, then raw PCM of every sentence back to back. Video: each sentence is one
        fragmented MP4 (init segment + fragments, talk_stream.py), announced by its own `media` event."""
        announced, part = False, 0
        video = options.output == "video"
        while (sentence := await sentences.get()) is not None:
            req = self._service.speech_request(sentence[: self.max_text_chars], voice=options.voice,
                                               emotion=options.emotion, speed=1.0,
                                               avatar=options.avatar if video else None)
            if video:
                stream: OpenStream[Any] = await self._service.talk_stream(req, route=CHAT_ROUTE, slot=slot)
            else:
                stream = await self._service.speech_stream(req, "pcm", route=CHAT_ROUTE, slot=slot)
            outcome = "client_closed"
            try:
                if timings.tts_first_audio is None:
                    timings.tts_first_audio = stream.first_bytes_s
                part += 1
                while (data := await stream.next()) is not None:
                    if not data:
                        continue
                    if video and not announced:
                        await out.event({**VIDEO_MEDIA, "part": part})
                        announced = True
                    elif not announced:
                        await out.event(AUDIO_MEDIA)
                        announced = True
                    await out.media(data)
                    if timings.first_audio is None:
                        timings.first_audio = time.perf_counter() - timings.ended_at
                        if self._service.record_metrics:
                            self._metrics.chat_first_audio.observe(timings.first_audio)
                outcome = await stream.finished_outcome()
            finally:
                stream.close(outcome)
            if video:
                announced = False  # the next sentence is a new fMP4, announced again

