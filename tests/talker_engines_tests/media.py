"""Look at produced media the way a consumer would: `wave` for WAV, the ffmpeg binary for MP4."""

from __future__ import annotations

import io
import os
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from talker.ffmpeg import ffmpeg_exe


@dataclass
class Wav:
    rate: int
    channels: int
    width: int
    samples: np.ndarray

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate

    @property
    def rms(self) -> float:
        return float(np.sqrt(np.mean(self.samples.astype(np.float64) ** 2))) if len(self.samples) else 0.0


def parse_wav(data: bytes) -> Wav:
    """Read a WAV the way any consumer would: with the standard library."""
    with wave.open(io.BytesIO(data), "rb") as w:
        raw = w.readframes(w.getnframes())
        return Wav(rate=w.getframerate(), channels=w.getnchannels(), width=w.getsampwidth(),
                   samples=np.frombuffer(raw, dtype="<i2"))


def ffmpeg_children(pid: int | None = None) -> list[int]:
    """ffmpeg processes whose parent is `pid` (default: this test process)."""
    parent, found = os.getpid() if pid is None else pid, []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        if ppid == parent and comm.startswith("ffmpeg"):
            found.append(int(entry.name))
    return found


def ffmpeg_info(path: str) -> str:
    """What `ffmpeg -i` says about a file (imageio-ffmpeg ships no ffprobe)."""
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", path], capture_output=True, text=True, check=False)
    return proc.stderr


def decode_frames(path: str, size: int) -> np.ndarray:
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", path, "-f", "rawvideo",
                           "-pix_fmt", "rgb24", "pipe:1"], capture_output=True, check=True)
    return np.frombuffer(proc.stdout, dtype=np.uint8).reshape(-1, size, size, 3)


def decode_audio(path: str, rate: int = 22050) -> np.ndarray:
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", path, "-vn", "-f", "s16le",
                           "-ac", "1", "-ar", str(rate), "pipe:1"], capture_output=True, check=True)
    return np.frombuffer(proc.stdout, dtype="<i2")


def median_pitch_hz(samples: np.ndarray, rate: int) -> float:
    """Median F0 over loud 40 ms windows by autocorrelation (60-500 Hz): crude but engine-independent."""
    x = samples.astype(np.float64)
    win = int(0.04 * rate)
    lo, hi = int(rate / 500), int(rate / 60)
    loud = 0.3 * np.sqrt(np.mean(x**2))
    pitches = []
    for start in range(0, len(x) - win, win):
        w = x[start:start + win]
        if np.sqrt(np.mean(w**2)) < loud:
            continue
        w = w - w.mean()
        ac = np.correlate(w, w, mode="full")[win - 1:]
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.3 * ac[0]:
            pitches.append(rate / lag)
    return float(np.median(pitches)) if pitches else 0.0
