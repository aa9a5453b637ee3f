"""int16 mono samples -> the response formats of OpenAI's speech API, encoded as the samples arrive.

wav and pcm are made here (a WAV header that declares an open length, and a 24 kHz resampler as OpenAI
defines `pcm`); mp3, opus, aac and flac come from the ffmpeg binary of imageio-ffmpeg, fed through a
pipe, with a reader thread handing its output on as soon as ffmpeg writes it. No temporary files; on
every exit path the ffmpeg process is killed and reaped and the reader thread joined (close()).
"""

from __future__ import annotations

import base64
import json
import os
import struct
import subprocess
import threading
from collections.abc import Callable
from typing import Protocol

import numpy as np

from talker.engine_contract import Cancelled
from talker.ffmpeg import ffmpeg_exe

Emit = Callable[[bytes], None]  # hands bytes to the client's buffer; may block, may raise Cancelled

PCM_RATE = 24_000  # OpenAI's `pcm`: raw 24 kHz, 16-bit signed little-endian, mono
MEDIA_TYPES: dict[str, str] = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",  # Opus in an Ogg container, as OpenAI sends it
    "aac": "audio/aac",  # ADTS frames
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
FORMATS: tuple[str, ...] = tuple(MEDIA_TYPES)
_FFMPEG_CODECS: dict[str, list[str]] = {
    "mp3": ["-c:a", "libmp3lame", "-b:a", "64k", "-write_xing", "0", "-f", "mp3"],
    "opus": ["-c:a", "libopus", "-b:a", "32k", "-page_duration", "100000", "-f", "ogg"],
    "aac": ["-c:a", "aac", "-b:a", "64k", "-f", "adts"],
    "flac": ["-c:a", "flac", "-f", "flac"],
}
_READ_BYTES = 64 * 1024


class AudioEncoder(Protocol):
    def feed(self, samples: np.ndarray) -> None: ...  # int16 mono at the rate given to open_encoder
    def finish(self) -> None: ...  # all samples given: flush the rest
    def close(self) -> None: ...  # always called last, also after errors: release everything


def open_encoder(fmt: str, sample_rate: int, emit: Emit) -> AudioEncoder:
    if fmt == "wav":
        return WavEncoder(sample_rate, emit)
    if fmt == "pcm":
        return PcmEncoder(sample_rate, emit)
    if fmt in _FFMPEG_CODECS:
        return FfmpegEncoder(fmt, sample_rate, emit)
    raise ValueError(f"unknown audio format {fmt!r}")


def streaming_wav_header(sample_rate: int) -> bytes:
    """A 16-bit mono WAV header whose sizes say "unknown" (0xFFFFFFFF): the length is not known yet."""
    unknown = 0xFFFFFFFF
    return (b"RIFF" + struct.pack("<I", unknown) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
            + b"data" + struct.pack("<I", unknown))


class WavEncoder:
    def __init__(self, sample_rate: int, emit: Emit) -> None:
        self._emit = emit
        self._header: bytes | None = streaming_wav_header(sample_rate)

    def feed(self, samples: np.ndarray) -> None:
        data = np.ascontiguousarray(samples, dtype="<i2").tobytes()
        if self._header is not None:  # sent with the first audio, so the first bytes carry sound
            data, self._header = self._header + data, None
        self._emit(data)

    def finish(self) -> None:
        if self._header is not None:
            self._emit(self._header)
            self._header = None

    def close(self) -> None:
        pass


class LinearResampler:
    """Streaming linear interpolation between sample rates (speech upsampled 16/22.05 -> 24 kHz)."""

    def __init__(self, rate_in: int, rate_out: int) -> None:
        self._step = rate_in / rate_out  # input samples per output sample
        self._pos = 0.0  # next output position, in input samples, relative to the carried-over sample
        self._carry: np.ndarray = np.zeros(0, dtype=np.float64)

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        x = np.concatenate([self._carry, samples.astype(np.float64)])
        if len(x) < 2:
            self._carry = x
            return np.zeros(0, dtype=np.int16)
        count = int(np.floor((len(x) - 1 - self._pos) / self._step)) + 1
        positions = self._pos + self._step * np.arange(max(0, count))
        out = np.interp(positions, np.arange(len(x)), x)
        self._pos = (positions[-1] + self._step if count > 0 else self._pos) - (len(x) - 1)
        self._carry = x[-1:]
        return np.clip(np.rint(out), -32768, 32767).astype(np.int16)


class PcmEncoder:
    def __init__(self, sample_rate: int, emit: Emit) -> None:
        self._emit = emit
        self._resample = None if sample_rate == PCM_RATE else LinearResampler(sample_rate, PCM_RATE)

    def feed(self, samples: np.ndarray) -> None:
        out = samples if self._resample is None else self._resample(samples)
        self._emit(np.ascontiguousarray(out, dtype="<i2").tobytes())

    def finish(self) -> None:
        pass

    def close(self) -> None:
        pass


class FfmpegEncoder:
    """PCM into ffmpeg's stdin (the producer's thread), encoded bytes out of its stdout (a reader thread)."""

    def __init__(self, fmt: str, sample_rate: int, emit: Emit) -> None:
        self._emit = emit
        argv = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error",
                "-f", "s16le", "-ar", str(sample_rate), "-ac", "1", "-i", "pipe:0",
                *_FFMPEG_CODECS[fmt], "-flush_packets", "1", "pipe:1"]
        self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE)
        self._error: BaseException | None = None
        self._stderr = b""
        self._reader = threading.Thread(target=self._pump, name=f"talker-ffmpeg-{fmt}", daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self._proc.stdout is not None and self._proc.stderr is not None
        fd = self._proc.stdout.fileno()
        try:
            while data := os.read(fd, _READ_BYTES):
                self._emit(data)
            self._stderr = self._proc.stderr.read()[-500:]
        except BaseException as exc:  # Cancelled (client gone) or a broken pipe: stop ffmpeg too
            self._error = exc
            self._proc.kill()

    def feed(self, samples: np.ndarray) -> None:
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(np.ascontiguousarray(samples, dtype="<i2").tobytes())
            self._proc.stdin.flush()
        except (BrokenPipeError, ValueError):  # ffmpeg gone: the reader says why
            self._raise_reader_error()
            raise RuntimeError("ffmpeg stopped reading audio") from None

    def finish(self) -> None:
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.close()
        except BrokenPipeError:
            pass
        self._reader.join()
        self._raise_reader_error()
        returncode = self._proc.wait()
        if returncode != 0:
            raise RuntimeError(f"ffmpeg exited with {returncode}: {self._stderr.decode(errors='replace')}")

    def _raise_reader_error(self) -> None:
        if self._error is not None:
            raise self._error if isinstance(self._error, Cancelled) else RuntimeError(
                f"ffmpeg output failed: {self._error!r}")

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._reader.join()
        for pipe in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            if pipe is not None and not pipe.closed:
                try:
                    pipe.close()
                except BrokenPipeError:
                    pass


def sse_delta(audio: bytes) -> bytes:
    """One OpenAI `speech.audio.delta` server-sent event carrying `audio` (base64)."""
    event = {"type": "speech.audio.delta", "audio": base64.b64encode(audio).decode("ascii")}
    return b"data: " + json.dumps(event).encode() + b"\n\n"


def sse_done(*, input_characters: int) -> bytes:
    """The closing `speech.audio.done` event. Usage counts characters: talker has no tokens."""
    usage = {"input_tokens": input_characters, "output_tokens": 0, "total_tokens": input_characters}
    return b"data: " + json.dumps({"type": "speech.audio.done", "usage": usage}).encode() + b"\n\n"
