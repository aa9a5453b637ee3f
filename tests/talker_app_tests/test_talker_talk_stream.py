"""POST /v1/talk/stream over real HTTP: fragmented MP4 while rendering goes on, and a clean end however it ends.

Runs against the `stream_talker` server (conftest): one slot, one queue place, a short write timeout and
an audio limit, so that long streams, slow readers and truncation are cheap to provoke.
"""

from __future__ import annotations

import io
import json
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from talker.animator.fmp4 import read_box
from talker.animator.stream_encode import MIME_TYPE
from talker_app_tests.talker_server import MAX_AUDIO_S, WRITE_TIMEOUT_S, TalkerServer
from talker_engines_tests.media import decode_frames

ROUTE = "/v1/talk/stream"
# About 30 s of speech at normal speed; at speed 0.5 over a minute (more than MAX_AUDIO_S).
LONG_TEXT = ("The deployment finished without errors and every check is green again. "
             "Latency is back under the objective and the error budget is safe for this week. ") * 3
STREAM_TEXT = "The deployment finished without errors. Every check is green again, and latency is fine."


@pytest.fixture
def server(stream_talker: TalkerServer) -> TalkerServer:
    return stream_talker


# --- what the server process has: children, threads ---------------------------------------------------
def ffmpeg_children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            if comm.startswith("ffmpeg") and int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def thread_count(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))


def wait_until_clean(server: TalkerServer, threads_before: int, deadline_s: float) -> float:
    """Seconds until the slot is free, no ffmpeg runs and no extra thread is left; fails after the deadline."""
    started = time.monotonic()
    while True:
        samples = server.samples()
        left = {
            "slots": samples[("talker_active_sessions", frozenset())],
            "active_streams": samples[("talker_streams_active", frozenset({("kind", "video")}))],
            "ffmpeg": ffmpeg_children(server.proc.pid),
            "extra_threads": max(0, thread_count(server.proc.pid) - threads_before),
        }
        if not any(left.values()):
            return time.monotonic() - started
        if time.monotonic() - started > deadline_s:
            pytest.fail(f"still there after {deadline_s}s: {left}")
        time.sleep(0.01)


def ended(server: TalkerServer, outcome: str) -> float:
    return server.value("talker_streams_ended_total", kind="video", outcome=outcome)


# --- a raw HTTP client, so the test decides exactly when to stop reading or hang up ------------------
class RawStream:
    def __init__(self, url: str, body: dict[str, object], *, receive_buffer: int | None = None) -> None:
        parts = urlsplit(url)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            # Before connect, so the TCP window stays this small; a small segment size too, or the server's
            # send buffer (sized from the loopback's 64 KiB segments) would swallow the whole video.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
        self.sock.settimeout(30)
        self.sock.connect((parts.hostname, parts.port))
        payload = json.dumps(body).encode()
        self.sock.sendall(b"POST " + ROUTE.encode() + b" HTTP/1.1\r\nHost: talker\r\nContent-Type: application/json"
                          b"\r\nContent-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)
        self.received = b""

    def read_until(self, marker: bytes, start: int = 0) -> bytes:
        while marker not in self.received[start:]:
            data = self.sock.recv(65536)
            if not data:
                raise AssertionError(f"connection ended before {marker!r}: {self.received[:300]!r}")
            self.received += data
        return self.received

    def first_chunk(self) -> bytes:
        """The payload of the first chunk of a chunked body: what the server sent in its first write."""
        head = self.read_until(b"\r\n\r\n").split(b"\r\n\r\n", 1)[0]
        assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head.lower(), head
        body_at = len(head) + 4
        size_line = self.read_until(b"\r\n", body_at)[body_at:].split(b"\r\n", 1)[0]
        start = body_at + len(size_line) + 2
        size = int(size_line, 16)
        while len(self.received) < start + size:
            data = self.sock.recv(65536)
            assert data, "connection ended inside the first chunk"
            self.received += data
        return self.received[start:start + size]

    def close(self) -> None:
        self.sock.close()


def boxes(data: bytes) -> list[str]:
    stream, kinds = io.BytesIO(data), []
    while (box := read_box(stream)) is not None:
        kinds.append(box[0].decode())
    return kinds


# --- the stories ----------------------------------------------------------------------------------------
def test_talker_talk_stream_sends_fmp4_while_rendering_and_counts_it(server: TalkerServer, tmp_path: Path) -> None:
    before = server.samples()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        started = time.monotonic()
        with client.stream("POST", ROUTE, json={"text": LONG_TEXT, "avatar": "kai", "speed": 0.8}) as response:
            assert response.status_code == 200, response.read()
            assert response.headers["content-type"] == MIME_TYPE  # what a MediaSource player needs
            assert response.headers["transfer-encoding"] == "chunked" and "content-length" not in response.headers
            assert response.headers["x-tts-engine"] == "espeak"
            chunks = response.iter_bytes()
            body = next(chunks)
            first_bytes_s = time.monotonic() - started
            # Proof that the first bytes left while the video was still being made: the producer still holds
            # its slot (it returns only when ffmpeg has written the last fragment).
            assert server.value("talker_active_sessions") == 1
            assert server.value("talker_streams_active", kind="video") == 1
            for chunk in chunks:
                body += chunk
        total_s = time.monotonic() - started

    kinds = boxes(body)
    assert kinds[:4] == ["ftyp", "moov", "moof", "mdat"] and kinds.count("moof") == kinds.count("mdat") > 20
    path = tmp_path / "stream.mp4"
    path.write_bytes(body)
    frames = len(decode_frames(str(path), 256))
    after = server.samples()

    def delta(name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("talker_streams_ended_total", kind="video", outcome="completed") == 1
    assert delta("talker_time_to_first_frame_seconds_count", route=ROUTE) == 1
    ttff = delta("talker_time_to_first_frame_seconds_sum", route=ROUTE)
    assert 0 < ttff <= first_bytes_s < 0.5 * total_s, (ttff, first_bytes_s, total_s)
    for stage in ("tts", "animate", "encode"):  # stage histograms keep working for streams
        assert delta("talker_stage_duration_seconds_count", stage=stage) == 1, stage
    assert delta("talker_video_frames_total") == frames > 25 * 20
    assert 20 < delta("talker_audio_seconds_total", engine="espeak") <= frames / 25
    assert delta("talker_http_requests_total", method="POST", route=ROUTE, status="200") == 1
    assert list(server.tmpdir.iterdir()) == []


def test_talker_talk_stream_client_gone_stops_everything_within_half_a_second(server: TalkerServer) -> None:
    threads_before = thread_count(server.proc.pid)
    closed_before = ended(server, "client_closed")
    stream = RawStream(server.url, {"text": LONG_TEXT, "speed": 0.5})
    # The first write is the init segment together with the first frames (what time-to-first-frame times).
    assert boxes(stream.first_chunk()) == ["ftyp", "moov", "moof", "mdat"]
    assert ffmpeg_children(server.proc.pid), "no ffmpeg while streaming?"
    stream.close()
    assert wait_until_clean(server, threads_before, deadline_s=0.5) < 0.5
    assert ended(server, "client_closed") == closed_before + 1
    assert list(server.tmpdir.iterdir()) == []


def test_talker_talk_stream_slow_reader_is_cut_after_the_write_timeout(server: TalkerServer) -> None:
    threads_before = thread_count(server.proc.pid)
    slow_before = ended(server, "slow_reader")
    stream = RawStream(server.url, {"text": LONG_TEXT, "speed": 0.5}, receive_buffer=4096)
    try:
        stream.read_until(b"moof")
        stopped_reading = time.monotonic()
        # The client reads nothing more. Buffers fill, the next write waits WRITE_TIMEOUT_S, then the cut.
        deadline = stopped_reading + WRITE_TIMEOUT_S + 5.0
        while ended(server, "slow_reader") == slow_before:
            assert time.monotonic() < deadline, "the slow reader was never cut"
            time.sleep(0.05)
        cut_after = time.monotonic() - stopped_reading
        assert WRITE_TIMEOUT_S <= cut_after, cut_after
        wait_until_clean(server, threads_before, deadline_s=0.5)
    finally:
        stream.close()
    assert list(server.tmpdir.iterdir()) == []


def test_talker_talk_stream_overload_is_429_before_any_byte(server: TalkerServer) -> None:
    server.set_faults(extra_latency_ms=3000)  # the first stream holds the only slot, the second waits
    holders: list[RawStream] = []
    try:
        holders.append(RawStream(server.url, {"text": "One."}))
        wait_for(lambda: server.value("talker_active_sessions") == 1)
        holders.append(RawStream(server.url, {"text": "Two."}))
        wait_for(lambda: server.value("talker_queue_depth") == 1)
        refused = httpx.post(f"{server.url}{ROUTE}", json={"text": "Three."}, timeout=10)
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/json" and int(refused.headers["retry-after"]) >= 1
        assert refused.json()["error"] == "overloaded"
    finally:
        for holder in holders:
            holder.close()
        server.clear_faults_and_drain()


def test_talker_talk_stream_audio_limit(server: TalkerServer, tmp_path: Path) -> None:
    # Surely longer than the limit: refused before anything is made.
    refused = httpx.post(f"{server.url}{ROUTE}", json={"text": "你好" * 100, "voice": "cmn", "speed": 0.5},
                         timeout=10)
    assert refused.status_code == 422 and refused.json()["field"] == "text", refused.text
    # Longer only once spoken (numbers are short to write, long to say): the stream ends cleanly at the
    # limit, a complete video, counted as truncated.
    truncated_before = server.value("talker_audio_truncated_total", route=ROUTE)
    numbers = " ".join(str(1234567 + 1111 * i) for i in range(40))  # about two minutes of speech
    response = httpx.post(f"{server.url}{ROUTE}", json={"text": numbers}, timeout=60)
    assert response.status_code == 200
    path = tmp_path / "cut.mp4"
    path.write_bytes(response.content)
    frames = len(decode_frames(str(path), 256))
    assert MAX_AUDIO_S * 25 - 2 <= frames <= MAX_AUDIO_S * 25 + 1
    assert server.value("talker_audio_truncated_total", route=ROUTE) == truncated_before + 1


def test_talker_talk_audio_limit_cuts_the_whole_video_too(server: TalkerServer, tmp_path: Path) -> None:
    """POST /v1/talk (one MP4, not streamed) obeys TALKER_MAX_AUDIO_SECONDS as the stream does (issue 9):
    a text that is longer only once spoken ends at the limit, a complete video, said and counted."""
    truncated_before = server.value("talker_audio_truncated_total", route="/v1/talk")
    # About 150 s of speech. Commas: espeak-ng drops what is past 300 words of one clause (its N_CLAUSE_WORDS),
    # so 40 numbers without them say only about 72 s when synthesized whole.
    numbers = ", ".join(str(1234567 + 1111 * i) for i in range(40))
    response = httpx.post(f"{server.url}/v1/talk", json={"text": numbers}, timeout=60)
    assert response.status_code == 200, response.text
    assert response.headers.get("x-audio-truncated") == "true"
    assert MAX_AUDIO_S - 0.05 <= float(response.headers["x-audio-seconds"]) <= MAX_AUDIO_S
    path = tmp_path / "cut.mp4"
    path.write_bytes(response.content)
    frames = len(decode_frames(str(path), 256))
    assert MAX_AUDIO_S * 25 - 2 <= frames <= MAX_AUDIO_S * 25 + 1
    assert int(response.headers["x-video-frames"]) == frames
    assert server.value("talker_audio_truncated_total", route="/v1/talk") == truncated_before + 1


def test_talker_talk_stream_bad_input_is_4xx_json(server: TalkerServer) -> None:
    for body, field in (({"text": STREAM_TEXT, "avatar": "nobody"}, "avatar"),
                        ({"text": STREAM_TEXT, "voice": "klingon"}, "voice"),
                        ({"text": "   "}, "text")):
        response = httpx.post(f"{server.url}{ROUTE}", json=body, timeout=10)
        assert response.status_code == 422 and response.json()["field"] == field, response.text


def wait_for(check: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)

