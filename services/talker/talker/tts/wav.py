"""16-bit mono PCM <-> RIFF/WAVE bytes, entirely in memory."""

from __future__ import annotations

import io
import wave

import numpy as np


def pcm16_to_wav(samples: np.ndarray, sample_rate: int) -> bytes:
    """A complete WAV file (16-bit PCM, mono) holding `samples` (int16)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(np.ascontiguousarray(samples, dtype="<i2").tobytes())
    return buf.getvalue()


def wav_to_pcm16(data: bytes) -> tuple[np.ndarray, int]:
    """Samples (int16, first channel) and sample rate of a 16-bit PCM WAV file."""
    with wave.open(io.BytesIO(data), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"expected 16-bit PCM, got {8 * wav.getsampwidth()}-bit")
        channels = wav.getnchannels()
        rate = wav.getframerate()
        frames = wav.readframes(wav.getnframes())
    samples = np.frombuffer(frames, dtype="<i2")
    if channels > 1:
        samples = samples[::channels]
    return samples.copy(), rate


def float_to_pcm16(audio: np.ndarray) -> np.ndarray:
    """Float audio in [-1, 1] to int16 (clipped)."""
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)
