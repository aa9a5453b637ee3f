"""The one place talker finds its ffmpeg binary (the one imageio-ffmpeg ships: libx264, aac, h264_nvenc)."""

from __future__ import annotations


def ffmpeg_exe() -> str:
    """Path of the ffmpeg executable every encoder and decoder in talker runs (the test helpers too)."""
    from imageio_ffmpeg import get_ffmpeg_exe  # imported on first use: `import talker` stays light

    return get_ffmpeg_exe()
