"""Clients that misbehave on purpose (stop reading, hang up) and views of what a server process holds."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from talker.ffmpeg import ffmpeg_exe
from talker_engines_tests.media import ffmpeg_children as ffmpeg_children  # re-exported for the stream tests

SPEECH = "/v1/audio/speech"
# About two minutes of espeak speech: more than the socket buffers and the stream buffer hold together.
LONG_TEXT = " ".join(["The deployment finished without errors and every check is green again."] * 26)


class RawStream:
    """One POST over a plain socket, so the test decides when (and whether) the body is read."""

    def __init__(self, url: str, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        parsed = urlparse(url)
        self.sock = socket.create_connection((parsed.hostname, parsed.port), timeout=10)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: stalls show early
        payload = json.dumps(body).encode()
        lines = [f"POST {path} HTTP/1.1", f"Host: {parsed.hostname}", "Content-Type: application/json",
                 f"Content-Length: {len(payload)}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
        self.head = b""
        while b"\r\n\r\n" not in self.head:
            data = self.sock.recv(4096)
            if not data:
                break
            self.head += data

    @property
    def status(self) -> int:
        return int(self.head.split(b" ", 2)[1])

    def hang_up(self) -> None:
        # SO_LINGER 0: a reset, like a browser tab that is closed; unread data does not delay it.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.sock.close()

    def close(self) -> None:
        self.sock.close()


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def ffmpeg_describe(data: bytes, suffix: str, tmp: Path) -> tuple[str, float]:
    """What ffmpeg says about an audio file, and its decoded length in seconds (16 kHz mono)."""
    path = tmp / f"audio.{suffix}"
    path.write_bytes(data)
    info = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    pcm = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", str(path), "-f", "s16le",
                          "-ac", "1", "-ar", "16000", "pipe:1"], capture_output=True, check=True)
    return info.stderr, len(pcm.stdout) / 2 / 16000
