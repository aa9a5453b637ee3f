"""Text-to-speech engines (espeak-ng via ctypes, Piper via onnxruntime) behind one small result type.

Engines know nothing of HTTP or metrics: they turn text into samples plus phoneme timing that the
animator uses to move the mouth.
"""

from __future__ import annotations

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

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.sample_rate if self.sample_rate else 0.0
