"""The conversation's ASR stage: spoken input -> text, offline (pocketsphinx) or remote (OpenAI-compatible).

    asr = SpeechToText.from_settings(settings, metrics)      # once, at startup
    asr.load()                                                # optional: load the model now (blocking, ~1 s)
    result = await asr.transcribe(data, "audio/webm;codecs=opus")   # or "wav", "ogg", "pcm" + pcm_rate=
    result.text, result.audio_seconds, result.asr_seconds, result.realtime_factor, result.engine
    await asr.aclose()                                        # at shutdown (the remote client's connections)

Errors: AudioInputError (talker.audio_input: the input, a client problem except kind "decoder") before any
recognition, AsrError (kind in ASR_ERROR_KINDS: the recogniser failed; never the client's fault) after.
`talker_stage_duration_seconds{stage="asr"}` and `talker_realtime_factor{stage="asr"}` get one observation per
recognised turn (recognition only: decoding is not included; failed turns are not observed).

Recognisers (one async interface, `Recogniser.recognise(DecodedAudio) -> str`):
- PocketsphinxRecogniser: offline US English, the model the pocketsphinx wheel ships. CPU-bound: it runs in a
  worker thread (asyncio.to_thread), one utterance at a time per decoder (the decoder is not thread-safe).
- OpenAITranscriptionRecogniser: POST {TALKER_ASR_BASE_URL}/audio/transcriptions through the official `openai`
  client (AsyncOpenAI, max_retries=0: a failed turn is reported, never silently re-billed), the audio sent as a
  16 kHz WAV.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from talker.audio_input import SAMPLE_RATE, DecodedAudio, InputFormat, InputLimits, decode_input_audio
from talker.engine_contract import STAGE_ASR

log = logging.getLogger("talker.asr")
ENGINE_POCKETSPHINX, ENGINE_REMOTE = "pocketsphinx", "remote"
# kind -> meaning. timeout: the remote server did not answer within TALKER_ASR_TIMEOUT_S; unauthorized: it refused
# our key (401/403); upstream: it answered an error or could not be reached; engine: the local recogniser failed.
ASR_ERROR_KINDS: tuple[str, ...] = ("timeout", "unauthorized", "upstream", "engine")


class AsrError(Exception):
    """Recognition failed. `kind` in ASR_ERROR_KINDS; `detail` is safe to show (no key, no audio)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind, self.detail = kind, detail


@dataclass(frozen=True)
class Transcript:
    text: str
    audio_seconds: float  # length of the decoded input
    asr_seconds: float  # recognition time (wall clock, decoding excluded)
    engine: str  # ENGINE_POCKETSPHINX | ENGINE_REMOTE

    @property
    def realtime_factor(self) -> float:
        """Recognition seconds per second of speech (below 1 is faster than real time)."""
        return self.asr_seconds / self.audio_seconds if self.audio_seconds > 0 else 0.0


class Recogniser(Protocol):
    name: str

    def load(self) -> None: ...

    async def recognise(self, audio: DecodedAudio) -> str: ...


class StageMetrics(Protocol):
    def observe_stage(self, stage: str, seconds: float, *, audio_seconds: float = 0.0) -> None: ...


class PocketsphinxRecogniser:
    """Offline US English with the model in the pocketsphinx wheel (pocketsphinx/model/en-us)."""

    name = ENGINE_POCKETSPHINX

    def __init__(self) -> None:
        self._decoder: object | None = None
        self._lock = threading.Lock()  # one utterance at a time: the decoder holds per-utterance state

    def load(self) -> None:
        with self._lock:
            self._load_locked()

    def _load_locked(self) -> object:
        if self._decoder is None:
            started = time.perf_counter()
            from pocketsphinx import Config, Decoder  # imported on first use: `import talker` stays light

            config = Config(samprate=SAMPLE_RATE, loglevel="FATAL")
            self._decoder = Decoder(config)
            # One line per model load: at start-up (TalkerService.warm_up_chat), never again in a turn.
            log.info("pocketsphinx model loaded", extra={"seconds": round(time.perf_counter() - started, 3)})
        return self._decoder

    def recognise_sync(self, audio: DecodedAudio) -> str:
        """Blocking: call from a worker thread (recognise() does)."""
        with self._lock:
            decoder = self._load_locked()
            try:
                decoder.start_utt()  # type: ignore[attr-defined]
                decoder.process_raw(audio.pcm, no_search=False, full_utt=True)  # type: ignore[attr-defined]
                decoder.end_utt()  # type: ignore[attr-defined]
            except RuntimeError as exc:
                raise AsrError("engine", f"pocketsphinx failed: {exc}") from None
            hyp = decoder.hyp()  # type: ignore[attr-defined]
            return " ".join(hyp.hypstr.split()) if hyp is not None else ""

    async def recognise(self, audio: DecodedAudio) -> str:
        return await asyncio.to_thread(self.recognise_sync, audio)


class OpenAITranscriptionRecogniser:
    """Any OpenAI-compatible POST /v1/audio/transcriptions (faster-whisper-server, vLLM, FunASR, the stand-in)."""

    name = ENGINE_REMOTE

    def __init__(self, *, base_url: str, model: str, api_key: str | None, timeout_s: float,
                 language: str | None = None) -> None:
        from openai import AsyncOpenAI

        self.base_url, self.model, self.language, self.timeout_s = base_url, model, language, timeout_s
        # The client insists on a key; an open server ignores the placeholder's Authorization header.
        self._client = AsyncOpenAI(base_url=base_url, api_key=api_key or "unused", timeout=timeout_s, max_retries=0)

    def load(self) -> None:
        return

    async def recognise(self, audio: DecodedAudio) -> str:
        import openai

        try:
            result = await self._client.audio.transcriptions.create(
                model=self.model,
                file=("speech.wav", audio.wav_bytes(), "audio/wav"),
                response_format="json",
                **({"language": self.language} if self.language else {}),
            )
        except openai.APITimeoutError:
            raise AsrError("timeout", f"the ASR server did not answer within TALKER_ASR_TIMEOUT_S "
                           f"({self.timeout_s:g} s)") from None
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise AsrError("unauthorized", f"the ASR server refused the key (HTTP {exc.status_code}); "
                           "check TALKER_ASR_API_KEY") from None
        except openai.APIStatusError as exc:
            raise AsrError("upstream", f"the ASR server answered HTTP {exc.status_code}") from None
        except openai.APIConnectionError:
            raise AsrError("upstream", "cannot reach the ASR server at TALKER_ASR_BASE_URL") from None
        text = getattr(result, "text", None)
        if not isinstance(text, str):
            raise AsrError("upstream", "the ASR server's answer has no text")
        return " ".join(text.split())

    async def aclose(self) -> None:
        await self._client.close()


def asr_api_key(settings: object) -> str | None:
    """TALKER_ASR_API_KEY or the content of TALKER_ASR_API_KEY_FILE (not both); an unreadable file is an error."""
    key = getattr(settings, "asr_api_key", None)
    key_file: Path | None = getattr(settings, "asr_api_key_file", None)
    if key_file is not None:
        if key is not None:
            raise ValueError("set TALKER_ASR_API_KEY or TALKER_ASR_API_KEY_FILE, not both")
        try:
            return key_file.read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            raise ValueError(f"cannot read TALKER_ASR_API_KEY_FILE {key_file}: {exc.strerror}") from None
    return key.get_secret_value() if key is not None else None


class SpeechToText:
    """Decode (bounded) + recognise + measure: the one call the conversation route makes per spoken turn."""

    def __init__(self, recogniser: Recogniser, limits: InputLimits, metrics: StageMetrics | None = None) -> None:
        self.recogniser, self.limits, self.metrics = recogniser, limits, metrics

    @classmethod
    def from_settings(cls, settings: object, metrics: StageMetrics | None = None) -> SpeechToText:
        base_url = getattr(settings, "asr_base_url", None)
        recogniser: Recogniser
        if base_url:
            recogniser = OpenAITranscriptionRecogniser(
                base_url=base_url, model=settings.asr_model,  # type: ignore[attr-defined]
                api_key=asr_api_key(settings), timeout_s=settings.asr_timeout_s,  # type: ignore[attr-defined]
                language=getattr(settings, "asr_language", None),
            )
        else:
            recogniser = PocketsphinxRecogniser()
        return cls(recogniser, InputLimits.from_settings(settings), metrics)

    @property
    def engine(self) -> str:
        return self.recogniser.name

    def load(self) -> None:
        """Load the local model now (blocking; startup), so the first turn does not pay for it."""
        self.recogniser.load()

    async def aclose(self) -> None:
        """At shutdown: close the remote client's connections (nothing to do for pocketsphinx)."""
        close = getattr(self.recogniser, "aclose", None)
        if close is not None:
            await close()

    async def transcribe(self, data: bytes, fmt: InputFormat | str, *, pcm_rate: int | None = None) -> Transcript:
        audio = await decode_input_audio(data, fmt, self.limits, pcm_rate=pcm_rate)
        return await self.recognise(audio)

    async def recognise(self, audio: DecodedAudio) -> Transcript:
        started = time.perf_counter()
        text = await self.recogniser.recognise(audio)
        seconds = time.perf_counter() - started
        if self.metrics is not None:
            self.metrics.observe_stage(STAGE_ASR, seconds, audio_seconds=audio.seconds)
        return Transcript(text=text, audio_seconds=audio.seconds, asr_seconds=seconds, engine=self.recogniser.name)
