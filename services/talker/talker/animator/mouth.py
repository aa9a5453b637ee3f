"""Per-video-frame mouth openness (0 closed .. 1 wide open) from the audio and the phoneme timing.

The audio envelope decides *whether* and how loud the mouth moves (so it is exactly 0 in silence);
the phoneme active in the frame shapes it: open vowels open wide, bilabials (m, b, p) close the lips.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence

import numpy as np

from talker.tts import PhonemeMark

# Frame RMS (int16 units) below which the frame counts as silence: about -47 dBFS.
SILENCE_RMS = 150.0
# Loudness that counts as "fully open": at least this, or the utterance's own 90th percentile.
_MIN_REFERENCE_RMS = 800.0

_OPEN_VOWELS = set("aAV0O&")
_MID_VOWELS = set("eE@3Y")
_CLOSE_VOWELS = set("iIuUy")
_BILABIALS = set("mbpw")
_LABIODENTALS = set("fv")


def phoneme_openness(phoneme: str) -> float:
    """How far a phoneme opens the mouth, from its espeak mnemonic (stress marks ignored)."""
    name = phoneme.lstrip("',%=")
    if not name or name.startswith("_"):
        return 0.0  # pause
    first = name[0]
    if first in _BILABIALS:
        return 0.08
    if first in _LABIODENTALS:
        return 0.3
    if first in _OPEN_VOWELS:
        return 1.0
    if first in _MID_VOWELS:
        return 0.8
    if first in _CLOSE_VOWELS:
        return 0.55
    return 0.45  # other consonants: teeth/tongue, mouth half open


def frame_count(audio_seconds: float, fps: int) -> int:
    """Frames needed to cover the audio (last frame may overhang by < 1/fps)."""
    return max(1, math.ceil(audio_seconds * fps - 1e-9))


def frame_rms(samples: np.ndarray, sample_rate: int, fps: int, n_frames: int) -> np.ndarray:
    audio = samples.astype(np.float64)
    edges = (np.arange(n_frames + 1) * sample_rate / fps).astype(np.int64)
    rms = np.zeros(n_frames)
    for i in range(n_frames):
        window = audio[edges[i]:edges[i + 1]]
        if window.size:
            rms[i] = math.sqrt(float(np.mean(window * window)))
    return rms


def openness_track(samples: np.ndarray, sample_rate: int, phonemes: Sequence[PhonemeMark], *, fps: int,
                   n_frames: int | None = None) -> np.ndarray:
    """Openness per frame (float32, length n_frames): exactly 0 where the frame is silent."""
    if n_frames is None:
        n_frames = frame_count(len(samples) / sample_rate, fps)
    rms = frame_rms(samples, sample_rate, fps, n_frames)
    voiced = rms >= SILENCE_RMS
    if not voiced.any():
        return np.zeros(n_frames, dtype=np.float32)
    reference = max(float(np.percentile(rms[voiced], 90)), _MIN_REFERENCE_RMS)
    envelope = np.clip(rms / reference, 0.0, 1.0) ** 0.7

    if phonemes:
        starts = [p.start_s for p in phonemes]
        shape = np.empty(n_frames)
        for i in range(n_frames):
            k = bisect_right(starts, (i + 0.5) / fps) - 1
            # A pause mark inside a voiced frame means the timing is coarse: trust the audio there.
            shape[i] = phoneme_openness(phonemes[k].phoneme) if k >= 0 else 0.0
            if shape[i] == 0.0 and voiced[i]:
                shape[i] = 0.45
    else:
        shape = np.full(n_frames, 0.8)

    raw = envelope * shape
    # A little smoothing so the lips glide; silence stays exactly closed afterwards.
    padded = np.pad(raw, 1, mode="edge")
    smooth = 0.25 * padded[:-2] + 0.5 * padded[1:-1] + 0.25 * padded[2:]
    smooth[~voiced] = 0.0
    return np.clip(smooth, 0.0, 1.0).astype(np.float32)
