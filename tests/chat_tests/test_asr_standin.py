"""The ASR stand-in speaks OpenAI's documented /v1/audio/transcriptions: the official client works unmodified."""

from __future__ import annotations

import http.client
import io
import json
import os
import subprocess
import sys
import wave
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from asr_standin.server import DEFAULT_PORT, MAX_UPLOAD_BYTES, AsrStandin

from stack.procs import free_port

ROOT = Path(__file__).resolve().parents[2]


def wav_seconds(seconds: float, rate: int = 16000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\0\0" * int(seconds * rate))
    return buffer.getvalue()


@pytest.fixture
def standin() -> Iterator[AsrStandin]:
    with AsrStandin(["first answer", "second answer"], api_key="k") as server:
        yield server


def client(standin: AsrStandin, key: str = "k") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{standin.base_url}/v1", api_key=key, max_retries=0)


def test_official_client_every_response_format(standin: AsrStandin) -> None:
    c = client(standin)
    audio = ("speech.wav", wav_seconds(1.5))
    assert c.audio.transcriptions.create(model="whisper-1", file=audio).text == "first answer"
    verbose = c.audio.transcriptions.create(model="whisper-1", file=audio, response_format="verbose_json",
                                            language="en")
    assert verbose.text == "second answer" and verbose.duration == 1.5 and verbose.language == "en"
    # The last scripted transcript repeats.
    assert c.audio.transcriptions.create(model="whisper-1", file=audio, response_format="text") == "second answer"
    assert [r["response_format"] for r in standin.requests] == ["json", "verbose_json", "text"]
    assert all(r["model"] == "whisper-1" and r["filename"] == "speech.wav" for r in standin.requests)


def test_key_check_and_documented_errors(standin: AsrStandin) -> None:
    with pytest.raises(openai.AuthenticationError):
        client(standin, key="nope").audio.transcriptions.create(model="whisper-1", file=("a.wav", wav_seconds(0.1)))
    with pytest.raises(openai.BadRequestError) as err:
        client(standin).audio.transcriptions.create(model="whisper-1", file=("a.wav", wav_seconds(0.1)),
                                                    response_format="srt")
    assert err.value.body["param"] == "response_format"  # type: ignore[index]
    reply = httpx.post(f"{standin.base_url}/v1/audio/transcriptions", headers={"Authorization": "Bearer k"},
                       data={"model": "whisper-1"}, files={"other": ("x.txt", b"x")})
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "file"
    assert reply.headers["X-Stand-In"] == "asr-standin"
    reply = httpx.post(f"{standin.base_url}/v1/audio/transcriptions", headers={"Authorization": "Bearer k"},
                       files={"file": ("a.wav", wav_seconds(0.1))})
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "model"
    reply = httpx.post(f"{standin.base_url}/v1/audio/transcriptions", content=b"{}",
                       headers={"Authorization": "Bearer k", "Content-Type": "application/json"})
    assert reply.status_code == 400 and "multipart" in reply.json()["error"]["message"]


def test_upload_bound_is_refused_before_reading(standin: AsrStandin) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", standin.port, timeout=10)
    conn.putrequest("POST", "/v1/audio/transcriptions")
    conn.putheader("Content-Type", "multipart/form-data; boundary=x")
    conn.putheader("Content-Length", str(MAX_UPLOAD_BYTES + 1))
    conn.endheaders()
    reply = conn.getresponse()
    assert reply.status == 413 and json.loads(reply.read())["error"]["param"] == "file"
    conn.close()


def test_injected_faults_count_and_clear(standin: AsrStandin) -> None:
    reply = httpx.post(f"{standin.base_url}/api/faults", json={"http_status": 503, "count": 2})
    assert reply.status_code == 200
    statuses = [httpx.post(f"{standin.base_url}/v1/audio/transcriptions", headers={"Authorization": "Bearer k"},
                           data={"model": "m"}, files={"file": ("a.wav", wav_seconds(0.1))}).status_code
                for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert len(httpx.get(f"{standin.base_url}/api/requests").json()) == 3
    assert httpx.post(f"{standin.base_url}/api/faults", json={"http_status": 200}).status_code == 422
    assert httpx.post(f"{standin.base_url}/api/faults", json={"http_status": 500, "hang": True}).status_code == 422
    assert httpx.delete(f"{standin.base_url}/api/requests").status_code == 200
    assert standin.requests == []
    assert httpx.post(f"{standin.base_url}/api/transcripts", json={"transcripts": ["scripted"]}).status_code == 200
    assert client(standin).audio.transcriptions.create(model="m", file=("a.wav", wav_seconds(0.1))).text == "scripted"


def test_transcript_chosen_by_the_upload() -> None:
    with AsrStandin(transcript_for=lambda name, audio: f"{name}:{len(audio)}") as server:
        c = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="anything", max_retries=0)
        assert c.audio.transcriptions.create(model="m", file=("x.ogg", b"12345")).text == "x.ogg:5"


def test_command_line_labels_itself_a_stand_in() -> None:
    port = free_port()
    env = {**os.environ, "ASR_STANDIN_TRANSCRIPT": "from the environment", "ASR_STANDIN_API_KEY": "envkey",
           "PYTHONPATH": str(ROOT / "services/asr-standin")}
    proc = subprocess.Popen([sys.executable, "-m", "asr_standin", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()  # printed once it listens
        assert "STAND-IN" in banner and f":{port}" in banner and "envkey" not in banner
        base = f"http://127.0.0.1:{port}"
        assert "STAND-IN" in httpx.get(f"{base}/").text
        c = openai.OpenAI(base_url=f"{base}/v1", api_key="envkey", max_retries=0)
        assert c.audio.transcriptions.create(model="m", file=("a.wav", wav_seconds(0.2))).text == "from the environment"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert DEFAULT_PORT == 8090
