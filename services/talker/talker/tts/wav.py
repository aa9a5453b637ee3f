"""16-bit mono PCM -> RIFF/WAVE bytes, entirely in memory."""

from __future__ import annotations

import struct

import numpy as np

# RIFF header of a 16-bit PCM mono file: RIFF size, WAVE, fmt chunk (16 bytes of PCM format), data size.
_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")


def wav_header(sample_rate: int, data_bytes: int) -> bytes:
    """The 44 bytes before `data_bytes` of 16-bit mono PCM (what the `wave` module writes)."""
    return _HEADER.pack(b"RIFF", 36 + data_bytes, b"WAVE", b"fmt ", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16,
                        b"data", data_bytes)


def pcm16_to_wav(samples: np.ndarray, sample_rate: int) -> bytes:
    """A complete WAV file (16-bit PCM, mono) holding `samples` (int16)."""
    pcm = np.ascontiguousarray(samples, dtype="<i2")  # no copy when the samples already are (espeak's, Piper's)
    return b"".join((wav_header(sample_rate, pcm.nbytes), pcm.data))  # one copy of the audio, not two


def float_to_pcm16(audio: np.ndarray) -> np.ndarray:
    """Float audio in [-1, 1] to int16 (clipped)."""
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)
