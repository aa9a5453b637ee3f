"""Raw RGB frames + WAV -> H.264/AAC MP4 bytes with the ffmpeg binary shipped by imageio-ffmpeg.

ffmpeg needs the audio as a file and `+faststart` needs a seekable output, so both live in a
private temporary directory that is removed on every exit path (success, error, cancellation).
Frames go to ffmpeg's stdin as they are rendered, so rendering and encoding overlap.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from talker.engine_contract import Cancelled, ShouldStop
from talker.ffmpeg import ffmpeg_exe


@dataclass
class EncodedVideo:
    mp4: bytes
    frames: int
    produce_seconds: float  # time spent waiting for the frame source (rendering)
    encode_seconds: float  # the rest: feeding ffmpeg and waiting for it to finish


def _ffmpeg_argv(size: int, fps: int, audio: Path, out: Path) -> list[str]:
    return [
        ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{size}x{size}", "-r", str(fps), "-i", "pipe:0",
        "-i", str(audio),
        "-map", "0:v:0", "-map", "1:a:0",
        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-crf", "23",
        "-c:a", "aac", "-b:a", "96k",
        "-movflags", "+faststart",
        str(out),
    ]


def encode_mp4(frame_batches: Iterable[np.ndarray], wav: bytes, *, size: int, fps: int,
               should_stop: ShouldStop = lambda: False, timeout_s: float = 300.0) -> EncodedVideo:
    """Encode frames (batches of (n, size, size, 3) uint8) with the WAV as the soundtrack."""
    started = time.perf_counter()
    producing = 0.0
    frames = 0
    workdir = Path(tempfile.mkdtemp(prefix="talker-encode-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        audio, out, errlog = workdir / "audio.wav", workdir / "out.mp4", workdir / "ffmpeg.log"
        audio.write_bytes(wav)
        with errlog.open("wb") as err:
            proc = subprocess.Popen(_ffmpeg_argv(size, fps, audio, out), stdin=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, stderr=err)
        assert proc.stdin is not None
        source = iter(frame_batches)
        while True:
            t0 = time.perf_counter()
            batch = next(source, None)
            producing += time.perf_counter() - t0
            if batch is None:
                break
            if should_stop():
                raise Cancelled("encoding cancelled")
            try:
                proc.stdin.write(np.ascontiguousarray(batch, dtype=np.uint8).tobytes())
            except BrokenPipeError:
                break  # ffmpeg died; its exit status and log say why, below
            frames += len(batch)
        proc.stdin.close()
        returncode = proc.wait(timeout=timeout_s)
        if returncode != 0:
            tail = errlog.read_text(encoding="utf-8", errors="replace").strip()[-500:]
            raise RuntimeError(f"ffmpeg exited with {returncode}: {tail}")
        mp4 = out.read_bytes()
    finally:
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdin is not None and not proc.stdin.closed:
                try:
                    proc.stdin.close()
                except BrokenPipeError:
                    pass  # ffmpeg is gone already; nothing left to flush
        shutil.rmtree(workdir, ignore_errors=True)
    total = time.perf_counter() - started
    return EncodedVideo(mp4=mp4, frames=frames, produce_seconds=producing, encode_seconds=total - producing)
