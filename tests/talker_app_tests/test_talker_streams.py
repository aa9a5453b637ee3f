"""Streams against a talker with API keys, a 1 s write timeout and TALKER_MAX_AUDIO_SECONDS=100.

Clients that hang up or stop reading are real sockets; the server's slot, threads, ffmpeg children and
temporary files are read from the outside (metrics port, /proc) with deadlines, never with sleeps.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest
from talker_app_tests.stream_client import SPEECH, RawStream, ffmpeg_children, thread_count
from talker_app_tests.talker_server import API_KEY, FILE_API_KEY, SECURED_MAX_AUDIO_S, WRITE_TIMEOUT_S, TalkerServer
from talker_engines_tests.media import parse_wav

from stack.procs import poll_until

KEY, FILE_KEY = API_KEY, FILE_API_KEY
AUTH = {"Authorization": f"Bearer {KEY}"}
# About 110 s of espeak speech, cut at 100 s (4.8 MB of pcm):
# more than the socket buffers and the stream buffer hold together.
LONG_TEXT = " ".join(["The deployment finished without errors and every check is green again."] * 27)
# Digits say far more than their length: the up-front estimate lets it through, the limit cuts it.
DIGITS = "1234567890123, " * 60


def idle(talker: TalkerServer) -> bool:
    samples = talker.samples()  # one scrape: each poll must be quick, the deadline is half a second
    return (samples[("talker_active_sessions", frozenset())] == 0
            and samples[("talker_streams_active", frozenset({("kind", "audio")}))] == 0
            and not ffmpeg_children(talker.proc.pid))


def access_line(talker: TalkerServer, request_id: str) -> dict[str, Any] | None:
    for line in talker.proc.log_path.read_text().splitlines():
        if f'"request_id": "{request_id}"' in line and '"talker.access"' in line:
            entry: dict[str, Any] = json.loads(line)
            return entry
    return None


def warm_thread_count(talker: TalkerServer, body: dict[str, Any]) -> int:
    """The server's thread count once a short stream of the same kind has run and the server is idle again.

    Pools start their threads on first use and keep them; without this warm-up a test that runs alone (not
    after others in this file) would count those as threads the stream under test left behind."""
    assert httpx.post(f"{talker.url}{SPEECH}", json={**body, "input": "Warm up."}, headers=AUTH,
                      timeout=30).status_code == 200
    poll_until(lambda: idle(talker), timeout=10, what="an idle server")
    return thread_count(talker.proc.pid)


def outcomes(talker: TalkerServer, outcome: str) -> float:
    return talker.value("talker_streams_ended_total", kind="audio", outcome=outcome)


def test_api_keys_guard_every_v1_route_and_stay_secret(secured: TalkerServer) -> None:
    talker = secured
    refused_before = talker.value("talker_requests_rejected_total", reason="unauthorized")
    calls = [("GET", "/v1/voices", None), ("POST", "/v1/tts", {"text": "hi"}),
             ("POST", SPEECH, {"model": "tts-1", "voice": "alloy", "input": "hi", "response_format": "wav"})]
    wrong = ["Bearer key-alpha-5b1f0", "Bearer key-alpha-5b1f0c0", "Bearer KEY-ALPHA-5B1F0C", f"Basic {KEY}"]
    with httpx.Client(base_url=talker.url, timeout=30) as client:
        for method, path, body in calls:
            missing = client.request(method, path, json=body)
            assert missing.status_code == 401, path
            assert missing.headers["www-authenticate"] == "Bearer"
            assert missing.json()["error"] == "unauthorized"
            for header in wrong:
                response = client.request(method, path, json=body, headers={"Authorization": header})
                assert response.status_code == (401 if header.startswith("Basic") else 403), (path, header)
            for key in (KEY, FILE_KEY):
                ok = client.request(method, path, json=body, headers={"Authorization": f"Bearer {key}"})
                assert ok.status_code == 200, (path, ok.text)
        assert client.get("/readyz").status_code == 200  # probes stay open for orchestrators
    refused = len(calls) * (1 + len(wrong))
    assert talker.value("talker_requests_rejected_total", reason="unauthorized") == refused_before + refused
    log = talker.proc.log_path.read_text()
    scrape = talker.scrape()
    for secret in (KEY, FILE_KEY, "key-alpha-5b1f0"):
        assert secret not in log and secret not in scrape


def test_openai_sdk_sends_its_key_as_the_bearer(secured: TalkerServer) -> None:
    good = openai.OpenAI(base_url=f"{secured.url}/v1", api_key=FILE_KEY, max_retries=0)
    with good.audio.speech.with_streaming_response.create(model="tts-1", voice="alloy", input="Hello.",
                                                          response_format="wav") as response:
        data = response.read()
    assert data[:4] == b"RIFF" and len(data) > 10_000
    with pytest.raises(openai.PermissionDeniedError):
        openai.OpenAI(base_url=f"{secured.url}/v1", api_key="not-a-key", max_retries=0).audio.speech.create(
            model="tts-1", voice="alloy", input="Hello.")


@pytest.mark.parametrize(("model", "fmt", "text"), [
    ("espeak", "pcm", LONG_TEXT),  # the producer waits on the full buffer when the client leaves
    ("piper", "mp3", LONG_TEXT[:600]),  # Piper mid-sentence and ffmpeg running when the client leaves
])
def test_client_that_hangs_up_stops_the_stream_within_half_a_second(secured: TalkerServer, model: str, fmt: str,
                                                                     text: str) -> None:
    talker = secured
    body = {"model": model, "voice": "alloy", "response_format": fmt}
    threads = warm_thread_count(talker, body)
    files = set(talker.tmpdir.iterdir())
    closed_before = outcomes(talker, "client_closed")
    request_id = f"hang-up-{model}-{fmt}"
    stream = RawStream(talker.url, SPEECH, {**body, "input": text}, headers={**AUTH, "X-Request-ID": request_id})
    try:
        assert stream.status == 200
        assert talker.value("talker_active_sessions") == 1  # still producing: the slot is held
        if fmt == "mp3":
            assert ffmpeg_children(talker.proc.pid)
    finally:
        stream.hang_up()
    # Seen from outside (scrapes and /proc scans take their own time on a busy box) ...
    poll_until(lambda: idle(talker), timeout=2, interval=0.01, what="slot freed, ffmpeg gone")
    assert outcomes(talker, "client_closed") == closed_before + 1
    # ... and measured by the server: from noticing the hang-up to the producer's thread letting go of the slot.
    line = poll_until(lambda: access_line(talker, request_id), timeout=5, what="the stream's log line")
    assert line["stream_outcome"] == "client_closed"
    assert line["stopped_after_s"] is not None and line["stopped_after_s"] < 0.5, line
    # <= : the metrics port answers each scrape in a short-lived thread of its own.
    poll_until(lambda: thread_count(talker.proc.pid) <= threads, timeout=3, interval=0.05, what="threads joined")
    assert set(talker.tmpdir.iterdir()) == files  # no temporary files left


def test_overload_is_429_before_any_byte(secured: TalkerServer) -> None:
    talker = secured
    # Each accepted request holds the one slot 4 s: time enough for the polls on a busy 2-core box, and the
    # 30 s deadline of this server lets both accepted ones finish.
    talker.set_faults(extra_latency_ms=4000)
    body = {"model": "tts-1", "voice": "alloy", "input": "hi", "response_format": "mp3"}

    def call() -> httpx.Response:
        return httpx.post(f"{talker.url}{SPEECH}", json=body, headers=AUTH, timeout=30)

    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            running = pool.submit(call)
            poll_until(lambda: talker.value("talker_active_sessions") == 1, timeout=5, what="first stream running")
            queued = pool.submit(call)
            poll_until(lambda: talker.value("talker_queue_depth") == 1, timeout=5, what="second stream queued")
            refused = httpx.post(f"{talker.url}{SPEECH}", json=body, headers=AUTH, timeout=5)
            assert refused.status_code == 429 and refused.json()["error"] == "overloaded"
            assert refused.headers["content-type"] == "application/json" and int(refused.headers["retry-after"]) >= 1
            assert running.result().status_code == 200 and queued.result().status_code == 200
    finally:
        talker.clear_faults_and_drain()


def test_client_that_stops_reading_is_cut_after_the_write_timeout(secured: TalkerServer) -> None:
    talker = secured
    body = {"model": "espeak", "voice": "alloy", "response_format": "pcm"}
    threads = warm_thread_count(talker, body)
    slow_before = outcomes(talker, "slow_reader")
    stream = RawStream(talker.url, SPEECH, {**body, "input": LONG_TEXT}, headers=AUTH)
    try:
        assert stream.status == 200
        started = time.monotonic()
        # Nothing is read: the socket fills, the buffer fills, the producer waits, the write times out.
        poll_until(lambda: outcomes(talker, "slow_reader") == slow_before + 1, timeout=WRITE_TIMEOUT_S + 15,
                   interval=0.05, what="the slow reader cut")
        assert time.monotonic() - started >= WRITE_TIMEOUT_S
        poll_until(lambda: idle(talker), timeout=1, interval=0.01, what="slot freed after the cut")
        poll_until(lambda: thread_count(talker.proc.pid) <= threads, timeout=3, interval=0.05, what="threads")
    finally:
        stream.close()
    assert talker.value("talker_streams_ended_total", kind="audio", outcome="error") == 0


def test_max_audio_seconds_refuses_up_front_or_cuts_cleanly(secured: TalkerServer) -> None:
    talker = secured
    too_long = " ".join(["Every check is green and the deployment finished."] * 55)  # ~2800 characters, ~155 s
    with httpx.Client(base_url=talker.url, timeout=60, headers=AUTH) as client:
        for path, body, field in (
            (SPEECH, {"model": "tts-1", "voice": "alloy", "input": too_long}, "input"),
            ("/v1/tts", {"text": too_long}, "text"),
            ("/v1/talk", {"text": too_long}, "text"),
        ):
            refused = client.post(path, json=body)
            assert refused.status_code == 422, path
            assert refused.json()["error"] == "audio too long" and refused.json()["field"] == field
            assert refused.json()["max_audio_seconds"] == SECURED_MAX_AUDIO_S

        cut_speech = talker.value("talker_audio_truncated_total", route=SPEECH)
        cut_tts = talker.value("talker_audio_truncated_total", route="/v1/tts")
        completed = outcomes(talker, "completed")
        pcm = client.post(SPEECH, json={"model": "espeak", "voice": "alloy", "input": DIGITS,
                                        "response_format": "pcm"})
        assert pcm.status_code == 200  # a complete body: the stream ended cleanly at the limit
        assert abs(len(pcm.content) / 2 / 24_000 - SECURED_MAX_AUDIO_S) < 0.01
        wav = client.post("/v1/tts", json={"text": DIGITS})
        assert wav.headers["x-audio-truncated"] == "true"
        assert abs(parse_wav(wav.content).seconds - SECURED_MAX_AUDIO_S) < 0.01
    assert talker.value("talker_audio_truncated_total", route=SPEECH) == cut_speech + 1
    assert talker.value("talker_audio_truncated_total", route="/v1/tts") == cut_tts + 1
    assert outcomes(talker, "completed") == completed + 1
    logged = [line for line in talker.proc.log_path.read_text().splitlines() if '"truncated": true' in line]
    assert len(logged) == 2 and all("TALKER_MAX_AUDIO_SECONDS" in line for line in logged)



def error_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if '"level": "error"' in line or "Traceback" in line or '"exc"' in line]


def test_streams_cut_on_purpose_log_no_error_but_a_real_error_still_does(secured: TalkerServer) -> None:
    # A client that hangs up or stops reading ends its stream as counted (client_closed, slow_reader): a normal
    # end, so no ERROR line or traceback (uvicorn called each an unfinished response); a 500 still logs ERROR.
    talker = secured
    poll_until(lambda: idle(talker), timeout=10, what="an idle server")
    start = len(talker.proc.log_path.read_text())
    body = {"model": "espeak", "voice": "alloy", "input": LONG_TEXT, "response_format": "pcm"}
    hang_up = RawStream(talker.url, SPEECH, body, headers={**AUTH, "X-Request-ID": "quiet-hang-up"})
    assert hang_up.status == 200
    hang_up.hang_up()
    slow = RawStream(talker.url, SPEECH, body, headers={**AUTH, "X-Request-ID": "quiet-slow-reader"})
    try:
        assert slow.status == 200
        # Generous: the write timeout is 1 s, the rest is a busy box; the access line is written in the same step
        # of the event loop as uvicorn's line after the response returns, so it is there once this is.
        line = poll_until(lambda: access_line(talker, "quiet-slow-reader"), timeout=WRITE_TIMEOUT_S + 30,
                          interval=0.05, what="the slow reader's log line")
    finally:
        slow.close()
    assert line["stream_outcome"] == "slow_reader"
    hung = poll_until(lambda: access_line(talker, "quiet-hang-up"), timeout=30, what="the hang-up's log line")
    assert hung["stream_outcome"] == "client_closed"
    assert error_lines(talker.proc.log_path.read_text()[start:]) == []

    talker.set_faults(error_rate=1.0)
    try:
        failed = httpx.post(f"{talker.url}{SPEECH}", json={**body, "input": "hi"},
                            headers={**AUTH, "X-Request-ID": "real-error"}, timeout=30)
    finally:
        talker.clear_faults_and_drain()
    assert failed.status_code == 500
    poll_until(lambda: access_line(talker, "real-error"), timeout=30, what="the failed request's log line")
    errors = error_lines(talker.proc.log_path.read_text()[start:])
    assert errors and all('"request_id": "real-error"' in e for e in errors), errors
