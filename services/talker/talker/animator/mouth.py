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


class StreamingOpenness:
    """openness_track() for audio that arrives in chunks: frames come out as soon as their audio is in.

    A frame is emitted once the next frame's audio is known too (the smoothing looks one frame ahead),
    so video trails audio by two frames. The loudness reference is the 90th percentile of the voiced
    frames heard so far (the whole utterance is not known yet), which is the only difference from
    openness_track(). Phoneme times are from the start of the stream.
    """

    def __init__(self, sample_rate: int, fps: int) -> None:
        self.sample_rate, self.fps = sample_rate, fps
        self._tail = np.zeros(0, dtype=np.int16)  # samples from the first frame not yet measured
        self._tail_start = 0  # stream sample index of _tail[0]
        self._phonemes: list[PhonemeMark] = []
        self._voiced_rms: list[float] = []
        self._measured = 0  # frames whose rms (and raw openness) are known
        self._raw: list[float] = []  # raw openness of measured frames not yet emitted, plus the one before
        self._voiced: list[bool] = []
        self._emitted = 0
        self._previous_raw: float | None = None

    @property
    def frames_emitted(self) -> int:
        return self._emitted

    def _edge(self, frame: int) -> int:
        return int(frame * self.sample_rate / self.fps)

    def feed(self, samples: np.ndarray, phonemes: Sequence[PhonemeMark] = ()) -> np.ndarray:
        """Openness (float32) of the frames that became final with this audio."""
        self._phonemes.extend(phonemes)
        self._tail = np.concatenate((self._tail, np.asarray(samples, dtype=np.int16)))
        end = self._tail_start + len(self._tail)
        complete = self._measured
        while self._edge(complete + 1) <= end:
            complete += 1
        self._measure(complete, end)
        return self._emit(final=False)

    def finish(self) -> np.ndarray:
        """Openness of the remaining frames, the last one covering the audio's end (as frame_count says)."""
        end = self._tail_start + len(self._tail)
        self._measure(frame_count(end / self.sample_rate, self.fps) if end else self._measured, end)
        return self._emit(final=True)

    def _measure(self, upto: int, end: int) -> None:
        if upto <= self._measured:
            return
        first = self._measured
        rms = np.zeros(upto - first)
        audio = self._tail.astype(np.float64)
        for k, i in enumerate(range(first, upto)):
            window = audio[self._edge(i) - self._tail_start:min(self._edge(i + 1), end) - self._tail_start]
            if window.size:
                rms[k] = math.sqrt(float(np.mean(window * window)))
        voiced = rms >= SILENCE_RMS
        self._voiced_rms.extend(rms[voiced].tolist())
        reference = max(float(np.percentile(self._voiced_rms, 90)), _MIN_REFERENCE_RMS) if self._voiced_rms else 1.0
        envelope = np.clip(rms / reference, 0.0, 1.0) ** 0.7
        starts = [p.start_s for p in self._phonemes]
        for k, i in enumerate(range(first, upto)):
            if not self._voiced_rms:
                shape = 0.0
            elif self._phonemes:
                j = bisect_right(starts, (i + 0.5) / self.fps) - 1
                shape = phoneme_openness(self._phonemes[j].phoneme) if j >= 0 else 0.0
                if shape == 0.0 and voiced[k]:
                    shape = 0.45
            else:
                shape = 0.8
            self._raw.append(float(envelope[k] * shape))
            self._voiced.append(bool(voiced[k]))
        self._measured = upto
        keep_from = self._edge(upto) - self._tail_start
        self._tail = self._tail[keep_from:]
        self._tail_start += keep_from

    def _emit(self, *, final: bool) -> np.ndarray:
        # _raw[0] is the first frame not yet emitted; the one before it (for smoothing) is _previous_raw.
        ready = len(self._raw) if final else len(self._raw) - 1
        out = np.zeros(max(0, ready), dtype=np.float32)
        for k in range(max(0, ready)):
            here = self._raw[k]
            before = here if self._previous_raw is None else self._previous_raw
            after = self._raw[k + 1] if k + 1 < len(self._raw) else here
            value = 0.25 * before + 0.5 * here + 0.25 * after
            out[k] = 0.0 if not self._voiced[k] else min(1.0, max(0.0, value))
            self._previous_raw = here
        self._raw = self._raw[len(out):]
        self._voiced = self._voiced[len(out):]
        self._emitted += len(out)
        return out
