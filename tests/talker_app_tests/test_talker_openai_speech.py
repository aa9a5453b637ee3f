"""POST /v1/audio/speech as OpenAI clients use it: the official `openai` package against the real service."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from talker_app_tests.stream_client import SPEECH, ffmpeg_children, ffmpeg_describe
from talker_app_tests.talker_server import TalkerServer
from talker_engines_tests.media import parse_wav

from stack.procs import poll_until

TEXT = "Hello there. The build is green, and the release is out."


def client_for(talker: TalkerServer) -> openai.OpenAI:
    # The SDK insists on a key; this server has none configured, so any value is ignored.
    return openai.OpenAI(base_url=f"{talker.url}/v1", api_key="unused", max_retries=0, timeout=30)


def reference_seconds(talker: TalkerServer, text: str = TEXT, voice: str = "en-us") -> float:
    response = httpx.post(f"{talker.url}/v1/tts", json={"text": text, "voice": voice}, timeout=30)
    assert response.status_code == 200
    return parse_wav(response.content).seconds


def test_openai_sdk_create_returns_mp3_by_default(talker: TalkerServer, tmp_path: Path) -> None:
    speech = client_for(talker).audio.speech.create(model="tts-1", voice="alloy", input=TEXT)
    info, seconds = ffmpeg_describe(speech.content, "mp3", tmp_path)
    assert "Audio: mp3" in info, info
    # espeak's own length (same voice: alloy maps to the default voice), plus the encoder's padding.
    assert abs(seconds - reference_seconds(talker)) < 0.15, (seconds, reference_seconds(talker))


def test_openai_sdk_streams_pcm_as_24khz_s16le_and_first_bytes_come_early(talker: TalkerServer) -> None:
    client = client_for(talker)
    long_text = " ".join([TEXT] * 8)  # ~25 s of speech, far beyond the first piece
    started = time.perf_counter()
    arrivals: list[tuple[float, int]] = []
    with client.audio.speech.with_streaming_response.create(
        model="espeak", voice="en-us", input=long_text, response_format="pcm",
    ) as response:
        assert response.headers["content-type"] == "audio/pcm"
        assert "content-length" not in response.headers  # chunked: sent while synthesizing
        assert response.headers["transfer-encoding"] == "chunked"
        for chunk in response.iter_bytes():
            arrivals.append((time.perf_counter() - started, len(chunk)))
    total = sum(n for _, n in arrivals)
    assert total % 2 == 0
    seconds = total / 2 / 24_000  # OpenAI's pcm: 24 kHz, 16-bit, mono
    # Synthesized piece by piece with the pauses between sentences put back: as long as in one piece.
    assert abs(seconds - reference_seconds(talker, long_text)) < 0.02 * seconds
    assert len(arrivals) >= 2  # more than one piece went out


@pytest.mark.parametrize(("fmt", "codec"), [
    ("wav", "pcm_s16le"), ("opus", "Audio: opus"), ("aac", "Audio: aac"), ("flac", "Audio: flac"),
])
def test_openai_response_formats_decode_to_the_same_speech(talker: TalkerServer, tmp_path: Path, fmt: str,
                                                           codec: str) -> None:
    speech = client_for(talker).audio.speech.create(model="tts-1", voice="nova", input=TEXT, response_format=fmt)
    info, seconds = ffmpeg_describe(speech.content, fmt, tmp_path)
    assert codec in info, info
    assert abs(seconds - reference_seconds(talker)) < 0.15, (fmt, seconds)


def test_openai_piper_model_uses_the_piper_voice(talker: TalkerServer) -> None:
    response = httpx.post(f"{talker.url}{SPEECH}", json={
        "model": "piper", "voice": "alloy", "input": "Good morning.", "response_format": "wav",
    }, timeout=30)
    assert response.status_code == 200
    assert response.headers["x-tts-engine"] == "piper"
    # A streamed WAV says "length unknown" in its header; the samples are all there.
    data = response.content
    assert data[:4] == b"RIFF" and data[40:44] == b"\xff\xff\xff\xff"
    assert 0.4 < (len(data) - 44) / 2 / 22050 < 3


def test_openai_sse_stream_carries_the_pcm_in_delta_events(talker: TalkerServer) -> None:
    body = {"model": "tts-1", "voice": "alloy", "input": TEXT, "response_format": "pcm", "stream_format": "sse"}
    with httpx.stream("POST", f"{talker.url}{SPEECH}", json=body, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line.removeprefix("data: ")) for line in response.iter_lines() if line]
    assert [e["type"] for e in events[:-1]] == ["speech.audio.delta"] * (len(events) - 1) and len(events) >= 2
    done = events[-1]
    assert done["type"] == "speech.audio.done" and done["usage"]["input_tokens"] == len(TEXT)
    pcm = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    plain = httpx.post(f"{talker.url}{SPEECH}", json={**body, "stream_format": "audio"}, timeout=30).content
    assert abs(len(pcm) - len(plain)) <= 0.02 * len(plain)  # same speech (espeak is not byte-deterministic)


@pytest.mark.parametrize(("change", "field", "allowed"), [
    ({"model": "tts-9"}, "model", ["tts-1", "tts-1-hd", "gpt-4o-mini-tts", "espeak", "piper"]),
    ({"voice": "darth"}, "voice", ["en-us", "cmn", "alloy", "nova"]),
    ({"model": "espeak", "voice": "piper:en_US-joe-medium"}, "voice", ["en-us", "alloy"]),
    ({"response_format": "ogg"}, "response_format", ["mp3", "opus", "aac", "flac", "wav", "pcm"]),
    ({"stream_format": "websocket"}, "stream_format", ["audio", "sse"]),
])
def test_openai_unknown_values_are_422_naming_the_allowed_ones(talker: TalkerServer, change: dict[str, str],
                                                               field: str, allowed: list[str]) -> None:
    body = {"model": "tts-1", "voice": "alloy", "input": "hi", **change}
    response = httpx.post(f"{talker.url}{SPEECH}", json=body, timeout=10)
    assert response.status_code == 422
    error = response.json()
    assert error["field"] == field and error["error"] == f"unknown {field}"
    assert set(allowed) <= set(error["allowed"])
    if change.get("model") == "espeak":
        assert "piper:en_US-joe-medium" not in error["allowed"]  # only the voices of the engine asked for


def test_openai_speed_outside_the_supported_range_is_422_naming_it(talker: TalkerServer) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as raised:
        client_for(talker).audio.speech.create(model="tts-1", voice="alloy", input="hi", speed=4.0)
    body = raised.value.response.json()
    assert body["field"] == "speed" and body["supported_range"] == [0.5, 2.0]
    assert "0.25 to 4.0" in body["detail"]
    ok = httpx.post(f"{talker.url}{SPEECH}", json={"model": "tts-1", "voice": "alloy", "input": "hi", "speed": 2.0,
                                                     "response_format": "wav"}, timeout=10)
    assert ok.status_code == 200
    missing = httpx.post(f"{talker.url}{SPEECH}", json={"model": "tts-1", "voice": "alloy"}, timeout=10)
    assert missing.status_code == 422 and missing.json()["field"] == "input"


def access_line(talker: TalkerServer, request_id: str) -> dict[str, Any] | None:
    for line in talker.proc.log_path.read_text().splitlines():
        if f'"request_id": "{request_id}"' in line and '"talker.access"' in line:
            entry: dict[str, Any] = json.loads(line)
            return entry
    return None


def test_openai_stream_past_the_request_deadline_is_cut_and_frees_its_slot(faults: TalkerServer) -> None:
    talker = faults
    # Piper at half speed: over a minute of speech. Alone that takes this CPU about as long as the 3 s deadline
    # (a quiet box finished it in time once), so 2 s of injected latency first: the body starts after it and
    # the deadline falls while Piper is still producing.
    talker.set_faults(extra_latency_ms=2000)
    text = " ".join(["Every check is green and the deployment finished without a single error."] * 6)
    timeouts = talker.value("talker_streams_ended_total", kind="audio", outcome="timeout")
    received = 0
    with pytest.raises(httpx.RemoteProtocolError), httpx.stream(
        "POST", f"{talker.url}{SPEECH}", timeout=30, headers={"X-Request-ID": "past-the-deadline"},
        json={"model": "piper", "voice": "alloy", "input": text, "response_format": "mp3", "speed": 0.5},
    ) as response:
        assert response.status_code == 200
        for chunk in response.iter_bytes():  # the body ends without its last chunk: a cut, not a short file
            received += len(chunk)
    assert received > 0
    assert talker.value("talker_streams_ended_total", kind="audio", outcome="timeout") == timeouts + 1
    # Freed at all is what is asserted here (how fast a hang-up frees it is test_talker_streams'); the deadline is
    # generous because scrapes and /proc scans wait for CPU on a loaded box.
    poll_until(lambda: talker.value("talker_active_sessions") == 0 and not ffmpeg_children(talker.proc.pid),
               timeout=15, interval=0.02, what="slot freed and ffmpeg gone")
    line = poll_until(lambda: access_line(talker, "past-the-deadline"), timeout=15, what="the stream's log line")
    assert line["stream_outcome"] == "timeout" and line["status"] == 200, line


def test_openai_streams_are_measured(talker: TalkerServer) -> None:
    def count(engine: str) -> float:
        return talker.value("talker_time_to_first_audio_seconds_count", route=SPEECH, engine=engine)

    completed = talker.value("talker_streams_ended_total", kind="audio", outcome="completed")
    tts_stages = talker.value("talker_stage_duration_seconds_count", stage="tts")
    espeak_before, piper_before = count("espeak"), count("piper")
    client = client_for(talker)
    client.audio.speech.create(model="espeak", voice="alloy", input=TEXT, response_format="wav")
    client.audio.speech.create(model="piper", voice="alloy", input="Good morning.", response_format="pcm")
    assert (count("espeak"), count("piper")) == (espeak_before + 1, piper_before + 1)
    assert talker.value("talker_streams_ended_total", kind="audio", outcome="completed") == completed + 2
    assert talker.value("talker_stage_duration_seconds_count", stage="tts") == tts_stages + 2
    assert talker.value("talker_streams_active", kind="audio") == 0
    first_audio_le_1s = talker.value("talker_time_to_first_audio_seconds_bucket", route=SPEECH, engine="espeak",
                                     le="1.0")
    assert first_audio_le_1s >= 1
