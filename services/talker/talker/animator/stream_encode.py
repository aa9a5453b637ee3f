"""One long-lived ffmpeg that turns raw frames and raw PCM, fed as they are made, into fragmented MP4.

Video (rgb24) goes to ffmpeg's stdin, audio (s16le mono) to a second pipe passed as an extra file
descriptor; ffmpeg writes fragmented MP4 (H.264 + AAC, a fragment per keyframe, `empty_moov`) to its
stdout, which `segments()` cuts into the init segment and moof+mdat media segments while the frames
are still being rendered. No temporary files.

Audio is written from its own thread with an unbounded queue (bounded in practice by the request's audio
limit): ffmpeg's scheduler stops reading an input that runs ahead of the other one, so writing audio and
video from one thread could block on the audio pipe while ffmpeg waits for video — a deadlock.
`close()` kills ffmpeg (which unblocks any pending write) and joins the writer thread; it is idempotent
and safe from any thread.
"""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import threading
from collections.abc import Iterator

import numpy as np

from talker.animator.fmp4 import Segment, segments
from talker.ffmpeg import ffmpeg_exe

# Constrained Baseline, level 3.0: what every MSE implementation plays. x264 writes this profile as
# profile_idc 66 with constraint_set0+1 (0xC0), so the RFC 6381 string is avc1.42C01E; mp4a.40.2 is AAC-LC.
H264_PROFILE, H264_LEVEL = "baseline", "3.0"
CODECS = "avc1.42C01E, mp4a.40.2"
MIME_TYPE = f'video/mp4; codecs="{CODECS}"'
# A keyframe (and so a fragment) every half second: the first fragment leaves after ~0.5 s of video.
KEYFRAME_SECONDS = 0.5


class EncoderFailed(RuntimeError):
    pass


def fmp4_argv(*, size: int, fps: int, sample_rate: int, audio_fd: int) -> list[str]:
    gop = max(1, round(fps * KEYFRAME_SECONDS))
    return [
        ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{size}x{size}", "-r", str(fps), "-i", "pipe:0",
        "-f", "s16le", "-ar", str(sample_rate), "-ac", "1", "-i", f"pipe:{audio_fd}",
        "-map", "0:v:0", "-map", "1:a:0",
        # zerolatency: no B-frames and no lookahead, so each frame leaves the encoder as soon as it arrives.
        "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-threads", "1",
        "-profile:v", H264_PROFILE, "-level", H264_LEVEL, "-pix_fmt", "yuv420p", "-crf", "23",
        "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
        "-c:a", "aac", "-b:a", "96k",
        # The default (make_zero) delays the video track by the AAC encoder's priming, so the first frame would
        # last two frame times and players would show one frame more than was rendered.
        "-avoid_negative_ts", "make_non_negative",
        "-f", "mp4", "-movflags", "+frag_keyframe+empty_moov+default_base_moof+skip_trailer",
        "-flush_packets", "1", "pipe:1",
    ]


class FragmentedMp4Encoder:
    """write_audio()/write_frames() from the producing thread, segments() from the sending one."""

    def __init__(self, *, size: int, fps: int, sample_rate: int) -> None:
        self.size, self.fps, self.sample_rate = size, fps, sample_rate
        audio_read, audio_write = os.pipe()
        try:
            self._proc = subprocess.Popen(
                fmp4_argv(size=size, fps=fps, sample_rate=sample_rate, audio_fd=audio_read),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(audio_read,),
            )
        except BaseException:
            os.close(audio_write)
            raise
        finally:
            os.close(audio_read)
        self._audio_fd: int | None = audio_write
        self._audio: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._audio_thread = threading.Thread(target=self._write_audio_loop, name="talker-fmp4-audio", daemon=True)
        self._audio_thread.start()
        # ffmpeg logs errors only, but a full stderr pipe would stall it: keep draining, remember the tail.
        self._stderr_tail = b""
        self._stderr_thread = threading.Thread(target=self._drain_stderr, name="talker-fmp4-log", daemon=True)
        self._stderr_thread.start()
        self._closed = False
        self._lock = threading.Lock()

    @property
    def pid(self) -> int:
        return self._proc.pid

    # --- producing side ----------------------------------------------------------------------------
    def write_audio(self, samples: np.ndarray) -> None:
        if len(samples):
            self._audio.put(np.ascontiguousarray(samples, dtype="<i2").tobytes())

    def write_frames(self, frames: np.ndarray) -> None:
        """Blocks while ffmpeg is busy (backpressure); BrokenPipeError once ffmpeg is gone."""
        stdin = self._proc.stdin
        assert stdin is not None
        stdin.write(np.ascontiguousarray(frames, dtype=np.uint8).data)
        stdin.flush()

    def finish_input(self) -> None:
        """No more audio or frames: ffmpeg flushes its encoders, writes the last fragment and exits."""
        self._audio.put(None)
        stdin = self._proc.stdin
        assert stdin is not None
        with contextlib.suppress(BrokenPipeError, ValueError):
            stdin.close()

    def _write_audio_loop(self) -> None:
        fd = self._audio_fd
        assert fd is not None
        try:
            while (chunk := self._audio.get()) is not None:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
        except OSError:
            pass  # ffmpeg is gone (killed or failed): its exit status tells the story
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)

    # --- sending side --------------------------------------------------------------------------------
    def segments(self) -> Iterator[Segment]:
        """Init segment, then each media segment as ffmpeg finishes it; raises EncoderFailed on a bad exit."""
        stdout = self._proc.stdout
        assert stdout is not None
        yield from segments(stdout)
        returncode = self._proc.wait()
        if returncode != 0:
            raise EncoderFailed(f"ffmpeg exited with {returncode}: {self._error_text()}")

    def _drain_stderr(self) -> None:
        stderr = self._proc.stderr
        assert stderr is not None
        with contextlib.suppress(OSError, ValueError):
            while chunk := stderr.read1(4096):
                self._stderr_tail = (self._stderr_tail + chunk)[-2000:]

    def _error_text(self) -> str:
        self._stderr_thread.join(timeout=1.0)
        return self._stderr_tail.decode("utf-8", "replace").strip()[-500:]

    # --- teardown ------------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop ffmpeg now (if still running) and release every pipe and thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._proc.poll() is None:
            self._proc.kill()
        self._audio.put(None)
        self._proc.wait()
        self._audio_thread.join()
        self._stderr_thread.join()
        for pipe in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError, ValueError):
                    pipe.close()
