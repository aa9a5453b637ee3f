"""Text-to-speech engines (espeak-ng via ctypes, Piper via onnxruntime) behind one small result type.

Engines know nothing of HTTP or metrics: they turn text into samples plus phoneme timing that the
animator uses to move the mouth.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class PhonemeMark:
    start_s: float  # when the phoneme starts in the audio
    phoneme: str  # engine's phoneme name (espeak mnemonic or IPA)


@dataclass
class SynthesizedSpeech:
    samples: np.ndarray  # int16 mono
    sample_rate: int
    engine: str  # "espeak" | "piper"
    phonemes: list[PhonemeMark] = field(default_factory=list)  # may be empty (Piper without alignments)
    truncated: bool = False  # cut at the caller's max_samples: the text says more than this

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.sample_rate if self.sample_rate else 0.0


class FirstPiecePriority:
    """Streams that are already speaking pause before their next piece while another stream makes its first.

    Time to first audio is what a listener waits for; a stream that has started is far ahead of real time
    (Piper ~15x, espeak ~600x on one core), so pausing it briefly costs its listener nothing. On a small CPU
    shared by several streams this keeps a new stream's first piece from queueing behind the others' later
    ones. A pause is bounded (MAX_PAUSE_S), so a stream of arrivals slows but never stops the others."""

    MAX_PAUSE_S = 0.3

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._making = 0  # first pieces being made now

    @contextlib.contextmanager
    def making_first_piece(self) -> Iterator[None]:
        with self._cond:
            self._making += 1
        try:
            yield
        finally:
            with self._cond:
                self._making -= 1
                if not self._making:
                    self._cond.notify_all()

    def wait_for_first_pieces(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._making == 0, timeout=self.MAX_PAUSE_S)


FIRST_PIECES = FirstPiecePriority()  # one per process: the streams share the CPU


class SpeechStream:
    """Speech as an engine produces it: iterate for pieces (int16 samples at `sample_rate`).

    Known before the first piece: engine and sample rate (a stream header needs them). Counted while it
    runs: seconds spent inside the engine (the "tts" stage), audio produced, and whether it was cut at
    the caller's limit. Phoneme times count from the start of the stream."""

    def __init__(self, *, engine: str, sample_rate: int, characters: int, pieces: Iterator[SynthesizedSpeech]) -> None:
        self.engine = engine
        self.sample_rate = sample_rate
        self.characters = characters
        self.tts_seconds = 0.0
        self.samples = 0
        self.truncated = False
        self._pieces = pieces
        self._given = 0

    @property
    def audio_seconds(self) -> float:
        return self.samples / self.sample_rate

    def __iter__(self) -> Iterator[SynthesizedSpeech]:
        return self

    def __next__(self) -> SynthesizedSpeech:
        first = self._given == 0
        if not first:
            FIRST_PIECES.wait_for_first_pieces()  # streams already speaking let new ones start first
        t0 = time.perf_counter()
        try:
            with FIRST_PIECES.making_first_piece() if first else contextlib.nullcontext():
                piece = next(self._pieces)
        finally:
            self.tts_seconds += time.perf_counter() - t0
        self._given += 1
        if piece.phonemes and self.samples:  # engines time phonemes per piece; a stream counts from its start
            offset = self.samples / self.sample_rate
            piece.phonemes = [PhonemeMark(p.start_s + offset, p.phoneme) for p in piece.phonemes]
        self.samples += len(piece.samples)
        self.truncated = self.truncated or piece.truncated
        return piece
