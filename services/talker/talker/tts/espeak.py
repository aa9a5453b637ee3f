"""espeak-ng 1.52 (from the `espeakng-loader` wheel) driven through its C API with ctypes, in memory.

The library keeps one global synthesizer, so every call holds a process-wide lock. Debian's
espeak-ng 1.51 is deliberately not used: it reads Mandarin tone digits as English numbers.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from talker.engine_contract import Cancelled, ShouldStop, UnknownVoice, VoiceInfo
from talker.tts import PhonemeMark, SynthesizedSpeech
from talker.tts.prosody import EspeakParams, Prosody, espeak_params
from talker.tts.segment import pause_after, split_for_streaming, synthesis_calls

log = logging.getLogger(__name__)

# espeak_AUDIO_OUTPUT / espeak_PARAMETER / event types from speak_lib.h (API revision 12).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE = 1, 2, 3, 4
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_EE_OK = 0
# Audio per synth callback (espeak also calls at sentence ends). Each callback re-enters Python and must take
# the GIL back from the event loop while the synthesizer's lock is held; 5 s chunks (instead of the 60 ms
# default) make that 2-3 times for a sentence, not dozens. Cancellation is polled per callback: a stopped
# request still synthesizes at most 5 s of audio (about 10 ms of CPU).
_BUFFER_MS = 5000
# Streaming: the first piece is short so its audio exists within milliseconds; later pieces are whole
# sentences (split past PIECE_WORDS) so the lock is taken a few times per request, not per word.
FIRST_PIECE_WORDS = 8
PIECE_WORDS = 40


class _EventId(ctypes.Union):
    _fields_ = [
        ("number", ctypes.c_int),
        ("name", ctypes.c_char_p),
        ("string", ctypes.c_char * 8),
    ]


class EspeakEvent(ctypes.Structure):
    """`espeak_EVENT` from speak_lib.h; ctypes adds the same padding before the pointer as the C compiler."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms from the start of this synthesis
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


# Plain addresses (not ctypes pointer objects) in the callback: the samples are copied with one string_at
# and the events read only when the caller wants phonemes, so a callback costs microseconds.
_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p)
_EVENT_SIZE = ctypes.sizeof(EspeakEvent)


@dataclass(frozen=True)
class EspeakVoice:
    id: str  # stable public id
    espeak_name: str  # name for espeak_SetVoiceByName
    language: str
    name: str


VOICES: tuple[EspeakVoice, ...] = (
    EspeakVoice("en-us", "en-us", "en-US", "English (US)"),
    EspeakVoice("en-gb", "en", "en-GB", "English (UK)"),
    EspeakVoice("cmn", "cmn", "zh-CN", "Mandarin Chinese (普通话)"),
    EspeakVoice("yue", "yue", "zh-HK", "Cantonese (粤语)"),
)
_VOICES_BY_ID = {v.id: v for v in VOICES}


@dataclass
class _Collector:
    """What the C callback fills in during one espeak_Synth call."""

    should_stop: ShouldStop = lambda: False
    max_samples: int | None = None  # stop once this much audio exists (TALKER_MAX_AUDIO_SECONDS)
    samples: int = 0
    truncated: bool = False
    pcm: bytearray = field(default_factory=bytearray)  # int16 samples in native byte order, as espeak made them
    phonemes: list[PhonemeMark] | None = field(default_factory=list)  # None: the caller needs no phoneme timing
    cancelled: bool = False
    error: BaseException | None = None
    offset_s: float = 0.0  # audio before this espeak_Synth call (a text of several calls: split_long_clauses)


class SynthesizerBusy(Exception):
    """The synthesizer was in use and the caller asked not to wait for it (nothing was synthesized)."""


class SynthLock:
    """The library's one lock, handed to a request's first piece before other requests' later pieces.

    Under concurrency a new request's first piece (a few words, under a millisecond of synthesis) would
    otherwise queue behind whole sentences of the requests already streaming, and its time to first audio
    with them; their later pieces lose at most that millisecond each, while their audio is still ahead
    of the listener by seconds. Later pieces cannot starve: first pieces come only from new requests,
    which the service's slots (TALKER_MAX_CONCURRENCY) bound. Among equals the order is the OS's.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._held = False
        self._urgent_waiting = 0
        self._waiting = 0

    @contextlib.contextmanager
    def hold(self, *, urgent: bool = False, wait: bool = True) -> Iterator[None]:
        """wait=False: take it only if it is free and nobody waits for it, else raise SynthesizerBusy at once."""
        with self._cond:
            if not wait and (self._held or self._waiting):
                raise SynthesizerBusy()
            self._waiting += 1
            self._urgent_waiting += urgent
            try:
                while self._held or (not urgent and self._urgent_waiting):
                    self._cond.wait()
            finally:
                self._waiting -= 1
                self._urgent_waiting -= urgent
            self._held = True
        try:
            yield
        finally:
            with self._cond:
                self._held = False
                self._cond.notify_all()

    def waiting(self) -> int:
        """Threads waiting for the lock now (for tests and diagnostics)."""
        with self._cond:
            return self._waiting


# The library is process-global, so is its state here: one lock, one active collector.
_LOCK = SynthLock()
_active = _Collector()
_lib: ctypes.CDLL | None = None
_sample_rate = 0
# The voice and parameters the library holds now. espeak keeps them between syntheses (a text cannot change
# them: no SSML, no embedded commands), so they are set again only when a request asks for others; setting a
# voice re-reads its files (0.1-0.4 ms) and each call hands the GIL over twice while the lock is held.
_configured: tuple[str, EspeakParams] | None = None


def _on_synth(wav: int | None, n: int, events: int | None) -> int:
    # Exceptions cannot cross the C boundary: record them and abort synthesis instead.
    collector = _active
    try:
        if collector.should_stop():
            collector.cancelled = True
            return 1
        if wav and n > 0:
            if collector.max_samples is not None and collector.samples + n > collector.max_samples:
                n = max(0, collector.max_samples - collector.samples)
                collector.truncated = True
            if n > 0:
                collector.pcm += ctypes.string_at(wav, 2 * n)
                collector.samples += n
        phonemes = collector.phonemes
        if events and phonemes is not None:
            while (ev := EspeakEvent.from_address(events)).type != _EVENT_LIST_TERMINATED:
                if ev.type == _EVENT_PHONEME:
                    name = ev.id.string.decode("utf-8", "replace")
                    phonemes.append(PhonemeMark(collector.offset_s + ev.audio_position / 1000.0, name))
                events += _EVENT_SIZE
        return 1 if collector.truncated else 0
    except BaseException as exc:  # re-raised by synthesize() once the C call has returned
        collector.error = exc
        return 1


_callback = _SynthCallback(_on_synth)  # kept referenced for the library's lifetime


def _load_library() -> tuple[ctypes.CDLL, int]:
    global _lib, _sample_rate
    if _lib is not None:
        return _lib, _sample_rate
    import espeakng_loader

    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                 ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    lib.espeak_Synth.restype = ctypes.c_int

    data_path = str(Path(espeakng_loader.get_data_path())).encode()
    rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, _BUFFER_MS, data_path, _INITIALIZE_PHONEME_EVENTS)
    if rate <= 0:
        raise RuntimeError(f"espeak_Initialize failed ({rate}) with data path {data_path!r}")
    lib.espeak_SetSynthCallback(_callback)
    _lib, _sample_rate = lib, rate
    return lib, rate


class EspeakEngine:
    """espeak-ng voices: fast (hundreds of times real time), robotic, many languages."""

    name = "espeak"

    def __init__(self) -> None:
        self._loaded = False

    def load(self) -> None:
        with _LOCK.hold():
            _load_library()
            self._loaded = True

    @property
    def sample_rate(self) -> int:
        return _sample_rate

    def voices(self) -> list[VoiceInfo]:
        return [VoiceInfo(id=v.id, engine=self.name, language=v.language, name=v.name) for v in VOICES]

    def has_voice(self, voice_id: str) -> bool:
        return voice_id in _VOICES_BY_ID

    def sample_rate_for(self, voice_id: str) -> int:
        return _sample_rate

    def stream(self, text: str, voice_id: str, prosody: Prosody, should_stop: ShouldStop = lambda: False,
               max_samples: int | None = None) -> Iterator[SynthesizedSpeech]:
        """The speech piece by piece (see segment.py); phoneme times are relative to each piece.

        The global lock is held per piece only, so a consumer that waits between pieces (a slow client)
        never keeps other requests from the synthesizer."""
        left = max_samples
        pieces = split_for_streaming(text, first_max_words=FIRST_PIECE_WORDS, max_words=PIECE_WORDS)
        for i, piece in enumerate(pieces):
            speech = self._synthesize(piece, voice_id, prosody, should_stop, left, phonemes=True, urgent=i == 0)
            pause_s = pause_after(piece) / prosody.rate**1.5 if i + 1 < len(pieces) else 0.0
            pause = int(pause_s * speech.sample_rate)
            if left is not None:
                pause = max(0, min(pause, left - len(speech.samples)))
            if pause and not speech.truncated:  # the pause espeak makes between sentences of one text
                speech.samples = np.concatenate([speech.samples, np.zeros(pause, dtype=np.int16)])
            yield speech
            if speech.truncated:
                return
            if left is not None:
                left -= len(speech.samples)

    def synthesize(self, text: str, voice_id: str, prosody: Prosody, should_stop: ShouldStop = lambda: False,
                   max_samples: int | None = None, *, phonemes: bool = True, wait: bool = True) -> SynthesizedSpeech:
        """The whole speech at once. phonemes=False leaves `phonemes` empty (nobody animates a mouth to it)
        and skips reading espeak's events. wait=False: raise SynthesizerBusy rather than wait for the
        synthesizer while another request uses it."""
        return self._synthesize(text, voice_id, prosody, should_stop, max_samples, phonemes=phonemes, urgent=False,
                                wait=wait)

    def _synthesize(self, text: str, voice_id: str, prosody: Prosody, should_stop: ShouldStop,
                    max_samples: int | None, *, phonemes: bool, urgent: bool, wait: bool = True) -> SynthesizedSpeech:
        global _active, _configured
        voice = _VOICES_BY_ID.get(voice_id)
        if voice is None:
            raise UnknownVoice(voice_id)
        params = espeak_params(prosody)
        # Usually one call; a clause whose numbers expand too far for espeak-ng is cut into several (segment.py).
        calls = [part.replace("\x00", " ").encode("utf-8") + b"\x00" for part in synthesis_calls(text)]
        with _LOCK.hold(urgent=urgent, wait=wait):  # urgent: a stream's first piece (SynthLock)
            lib, rate = _load_library()
            if _configured != (voice.espeak_name, params):
                _configured = None  # unknown until both calls below have succeeded
                if lib.espeak_SetVoiceByName(voice.espeak_name.encode()) != _EE_OK:
                    raise RuntimeError(f"espeak-ng has no voice {voice.espeak_name!r}")
                for param, value in ((_PARAM_RATE, params.rate_wpm), (_PARAM_VOLUME, params.volume),
                                     (_PARAM_PITCH, params.pitch), (_PARAM_RANGE, params.pitch_range)):
                    lib.espeak_SetParameter(param, value, 0)
                _configured = (voice.espeak_name, params)
            collector = _active = _Collector(should_stop=should_stop, max_samples=max_samples,
                                             phonemes=[] if phonemes else None)
            for encoded in calls:
                collector.offset_s = collector.samples / rate
                status = lib.espeak_Synth(encoded, len(encoded), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
                if status != _EE_OK or collector.cancelled or collector.error is not None or collector.truncated:
                    break
            _active = _Collector()
        if collector.cancelled:
            raise Cancelled("speech synthesis cancelled")
        if collector.error is not None:
            raise collector.error  # e.g. from should_stop(): the caller's own exception, unchanged
        if status != _EE_OK:
            raise RuntimeError(f"espeak_Synth returned {status}")
        samples = np.frombuffer(collector.pcm, dtype=np.int16)  # shares the bytearray: no copy, writable
        marks = collector.phonemes or []
        if collector.truncated:
            end_s = len(samples) / rate
            marks = [p for p in marks if p.start_s < end_s]
        return SynthesizedSpeech(samples=samples, sample_rate=rate, engine=self.name, phonemes=marks,
                                 truncated=collector.truncated)
