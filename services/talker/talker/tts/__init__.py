"""Text-to-speech engines (espeak-ng via ctypes, Piper via onnxruntime) behind one small result type.

Engines know nothing of HTTP or metrics: they turn text into samples plus phoneme timing that the
animator uses to move the mouth.
"""

from __future__ import annotations

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

    @property
    def audio_seconds(self) -> float:
        return self.samples / self.sample_rate

    def __iter__(self) -> Iterator[SynthesizedSpeech]:
        return self

    def __next__(self) -> SynthesizedSpeech:
        t0 = time.perf_counter()
        try:
            piece = next(self._pieces)
        finally:
            self.tts_seconds += time.perf_counter() - t0
        if piece.phonemes and self.samples:  # engines time phonemes per piece; a stream counts from its start
            offset = self.samples / self.sample_rate
            piece.phonemes = [PhonemeMark(p.start_s + offset, p.phoneme) for p in piece.phonemes]
        self.samples += len(piece.samples)
        self.truncated = self.truncated or piece.truncated
        return piece
