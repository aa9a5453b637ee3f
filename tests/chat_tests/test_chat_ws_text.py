"""/v1/chat/ws, text in, audio out: a user types, the answer streams back as text and speech while the LLM
is still writing it. A real talker process, a real LLM stand-in (0.3 s to the first token, then 8 tokens/s)."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from chat_tests.chat_ws_client import API_KEY, ChatClient, ChatStack, Frame
from chat_tests.conftest import FIRST_TOKEN_DELAY_S, LONG_REPLY
from talker.metrics import CHAT_INPUTS, CHAT_TURN_OUTCOMES
from websockets.exceptions import ConnectionClosed, InvalidStatus

from stack.procs import poll_until
from stack.prometheus_text import metric_families


def events(frames: list[Frame], kind: str) -> list[dict]:
    return [f.event for f in frames if f.type == kind and f.event is not None]


def test_text_turn_streams_text_and_audio_before_the_llm_has_finished(chat_stack: ChatStack) -> None:
    chat_stack.llm.replies = [LONG_REPLY]
    with chat_stack.connect() as client:
        assert client.ws.subprotocol == "talker.chat"  # the protocol name, never the key entry
        client.send(type="config", voice="en-us", output="audio")
        ready = client.until("ready")[-1].event
        assert ready is not None and ready["session_id"] and ready["output"] == "audio"
        before = chat_stack.talker.value("talker_chat_turns_total", input="text", outcome="completed")

        sent, frames = client.turn("Say something long, please.")

    deltas = [f for f in frames if f.type == "reply_delta"]
    binaries = [f for f in frames if f.type == "binary"]
    assert "".join(f.event["text"] for f in deltas if f.event) == LONG_REPLY
    media = events(frames, "media")
    assert media == [{"type": "media", "kind": "audio", "format": "pcm_s16le", "sample_rate": 24000, "channels": 1,
                     "turn": 1}]
    first_media_index = next(i for i, f in enumerate(frames) if f.type == "media")
    assert first_media_index < next(i for i, f in enumerate(frames) if f.type == "binary")
    assert sum(len(f.data or b"") for f in binaries) > 24000 * 2 * 2  # several seconds of speech
    # Pipelined: text deltas arrive while the LLM writes (8 tokens/s: the reply takes ~3 s), the first audio
    # long before the last delta, and everything before turn_end.
    reply_span = deltas[-1].at - deltas[0].at
    assert reply_span > 1.5
    assert binaries[0].at < deltas[-1].at - 1.0
    first_audio = binaries[0].at - sent
    assert FIRST_TOKEN_DELAY_S < first_audio < FIRST_TOKEN_DELAY_S + 1.5
    assert frames[-1].type == "turn_end"
    end = frames[-1].event
    assert end is not None and end["outcome"] == "completed"
    timings = end["timings"]
    assert set(timings) == {"llm_ttft", "llm", "tts_first_audio", "first_audio", "total"}
    assert FIRST_TOKEN_DELAY_S <= timings["llm_ttft"] < FIRST_TOKEN_DELAY_S + 0.5
    assert timings["first_audio"] < timings["llm"] - 1.0 < timings["total"]
    server = chat_stack.talker
    assert server.value("talker_chat_turns_total", input="text", outcome="completed") == before + 1
    assert server.value("talker_chat_first_audio_seconds_count") >= 1
    assert server.value("talker_stage_duration_seconds_count", stage="llm") >= 1


def test_bad_messages_get_error_events_and_the_socket_stays_usable(chat_stack: ChatStack) -> None:
    chat_stack.llm.replies = ["Fine."]
    with chat_stack.connect() as client:
        client.send_raw("this is not json")
        assert client.recv().event == {"type": "error", "error": "malformed message",
                                       "detail": "not valid JSON (at character 0)"}
        client.send(type="dance")
        error = client.recv().event
        assert error is not None and error["error"] == "unknown type" and error["field"] == "type"
        client.send(type="user_text")
        error = client.recv().event
        assert error is not None and error["error"] == "missing text" and error["field"] == "text"
        client.send(type="user_text", text="x" * 501)
        error = client.recv().event
        assert error is not None and error["error"] == "text too long" and "500" in error["detail"]
        client.send_raw('{"type": "user_text", "text": "' + "y" * 20000 + '"}')
        error = client.recv().event
        assert error is not None and error["error"] == "message too large"
        client.send(type="config", voice="klingon")
        error = client.recv().event
        assert error is not None and error["field"] == "voice" and error["status"] == 422
        client.send(type="config", output="hologram")
        error = client.recv().event
        assert error is not None and error["field"] == "output" and error["allowed"] == ["audio", "video"]
        client.send_raw(b"\x00\x01")
        error = client.recv().event
        assert error is not None and error["error"] == "unexpected binary frame"
        _, frames = client.turn("Still there?")
    assert "".join(e["text"] for e in events(frames, "reply_delta")) == "Fine."
    assert frames[-1].event is not None and frames[-1].event["outcome"] == "completed"


def test_missing_or_wrong_key_and_foreign_origin_are_refused(chat_stack: ChatStack) -> None:
    before = chat_stack.talker.value("talker_requests_rejected_total", reason="unauthorized")
    with pytest.raises(InvalidStatus) as refused:
        chat_stack.connect(key="not-the-key")
    assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as foreign:
        chat_stack.connect(origin="https://evil.example")
    assert foreign.value.response.status_code == 403
    # No key in the subprotocols: the first message must be the auth message.
    with chat_stack.connect(key=None) as client:
        client.send(type="user_text", text="let me in")
        error = client.recv().event
        assert error is not None and error["status"] == 401
        with pytest.raises(ConnectionClosed) as closed:
            client.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    with chat_stack.connect(key=None) as client:
        client.send(type="auth", api_key="wrong")
        error = client.recv().event
        assert error is not None and error["status"] == 403
    after = chat_stack.talker.value("talker_requests_rejected_total", reason="unauthorized")
    assert after == before + 4
    # The right key in the first message, and a page of the talker's own host, are let in.
    host = chat_stack.talker.url.removeprefix("http://")
    with chat_stack.connect(key=None, origin=f"http://{host}") as client:
        client.send(type="auth", api_key=API_KEY)
        client.send(type="config")
        assert client.until("ready")[-1].event is not None


def test_barge_in_stops_the_old_turn(chat_stack: ChatStack) -> None:
    short = "Okay, stopping now."
    chat_stack.llm.replies = [LONG_REPLY]
    server = chat_stack.talker
    cancelled_before = server.value("talker_chat_turns_total", input="text", outcome="cancelled")
    with chat_stack.connect() as client:
        client.send(type="user_text", text="Tell me a long story.")
        first = client.until("binary")
        assert events(first, "turn_start")[0]["turn"] == 1
        chat_stack.llm.replies = [short]
        client.send(type="user_text", text="Stop.")
        frames = client.until("turn_end")
    start = next(i for i, f in enumerate(frames) if f.type == "turn_start")
    assert frames[start].event is not None and frames[start].event["turn"] == 2
    after_start = frames[start + 1:]
    assert all(f.event is None or f.event.get("turn", 2) == 2 for f in after_start)
    assert "".join(e["text"] for e in events(after_start, "reply_delta")) == short
    assert not [f for f in frames[:start] if f.type == "turn_end"]  # the old turn ends silently
    # Only the new answer's audio follows turn_start: as long as speaking it alone (within the resampler's
    # rounding at piece boundaries, a few samples; the old answer's first sentence alone is ~40000 bytes).
    spoken = httpx.post(f"{server.url}/v1/audio/speech", headers={"Authorization": f"Bearer {API_KEY}"}, json={
        "model": "espeak", "voice": "en-us", "input": short, "response_format": "pcm"}, timeout=30)
    assert spoken.status_code == 200
    assert abs(sum(len(f.data or b"") for f in after_start) - len(spoken.content)) <= 64
    assert server.value("talker_chat_turns_total", input="text", outcome="cancelled") == cancelled_before + 1
    assert server.value("talker_llm_requests_total", outcome="cancelled") >= 1


def test_llm_failure_is_an_error_event_and_a_counted_outcome(chat_stack: ChatStack) -> None:
    server = chat_stack.talker
    before = server.value("talker_chat_turns_total", input="text", outcome="llm_error")
    chat_stack.llm.fault = "error-500"
    try:
        with chat_stack.connect() as client:
            _, frames = client.turn("Hello?")
            error = events(frames, "error")
            assert len(error) == 1 and error[0]["stage"] == "llm" and error[0]["outcome"] == "upstream_error"
            assert frames[-1].event is not None and frames[-1].event["outcome"] == "llm_error"
            assert not [f for f in frames if f.type == "binary"]
            chat_stack.llm.fault = None
            chat_stack.llm.replies = ["Back again."]
            _, frames = client.turn("Hello again?")
            assert frames[-1].event is not None and frames[-1].event["outcome"] == "completed"
    finally:
        chat_stack.llm.fault = None
    assert server.value("talker_chat_turns_total", input="text", outcome="llm_error") == before + 1
    assert server.value("talker_llm_requests_total", outcome="upstream_error") >= 1


def test_chat_metrics_have_fixed_labels_and_pass_promtool(chat_stack: ChatStack) -> None:
    with chat_stack.connect() as client:
        client.send(type="config")
        client.until("ready")
        assert chat_stack.talker.value("talker_chat_sessions_active") == 1
    poll_until(lambda: chat_stack.talker.value("talker_chat_sessions_active") == 0, timeout=10,
               what="the closed socket to leave talker_chat_sessions_active")
    text = chat_stack.talker.scrape()
    families = metric_families(text)
    turns = {(s.labels["input"], s.labels["outcome"]) for s in families["talker_chat_turns"].samples
             if s.name.endswith("_total")}
    assert turns == {(i, o) for i in CHAT_INPUTS for o in CHAT_TURN_OUTCOMES}
    assert families["talker_chat_first_audio_seconds"].type == "histogram"
    result = subprocess.run(["/usr/bin/promtool", "check", "metrics"], input=text.encode(), capture_output=True,
                            timeout=30)
    assert result.returncode == 0, (result.stdout + result.stderr).decode()


def test_a_turn_the_service_does_not_admit_is_refused_before_the_llm_is_asked(chat_stack: ChatStack) -> None:
    server = chat_stack.talker
    before = server.value("talker_chat_turns_total", input="text", outcome="refused")
    chat_stack.llm.clear()
    server.set_faults(error_rate=1.0, extra_latency_ms=0, not_ready=False)
    try:
        with chat_stack.connect() as client:
            _, frames = client.turn("Hello?")
    finally:
        server.clear_faults_and_drain()
    error = events(frames, "error")
    assert len(error) == 1 and error[0]["status"] == 500 and error[0]["error"] == "injected fault"
    assert frames[-1].event is not None and frames[-1].event["outcome"] == "refused"
    assert chat_stack.llm.requests == []
    assert server.value("talker_chat_turns_total", input="text", outcome="refused") == before + 1


def test_a_turn_with_every_slot_and_queue_place_taken_gets_a_429_event(chat_stack: ChatStack) -> None:
    server = chat_stack.talker
    chat_stack.llm.replies = ["Hello. This will not be spoken."]
    before = server.value("talker_chat_turns_total", input="text", outcome="refused")
    # Six /v1/tts requests that hold the 2 slots and 4 queue places (each job waits 2.5 s in its slot).
    server.set_faults(error_rate=0.0, extra_latency_ms=2500, not_ready=False)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    try:
        with ThreadPoolExecutor(6) as pool:
            held = [pool.submit(httpx.post, f"{server.url}/v1/tts", json={"text": "Busy."}, headers=headers,
                                timeout=30) for _ in range(6)]
            poll_until(lambda: server.value("talker_active_sessions") == 2 and server.value("talker_queue_depth") == 4,
                       timeout=10, what="every slot and queue place taken")
            with chat_stack.connect() as client:
                _, frames = client.turn("Are you busy?")
            for future in held:
                future.result()
    finally:
        server.clear_faults_and_drain()
    error = events(frames, "error")
    assert len(error) == 1 and error[0]["status"] == 429 and error[0]["retry_after_s"] >= 1
    assert frames[-1].event is not None and frames[-1].event["outcome"] == "refused"
    assert not [f for f in frames if f.type == "binary"]
    assert server.value("talker_chat_turns_total", input="text", outcome="refused") == before + 1


def test_a_session_is_resumed_by_the_id_the_server_gave_and_keeps_its_history(chat_stack: ChatStack) -> None:
    server = chat_stack.talker
    chat_stack.llm.replies = ["Noted."]

    def prompt_tokens_of(client: ChatClient, text: str) -> float:
        before = server.value("talker_llm_tokens_total", kind="prompt")
        _, frames = client.turn(text)
        assert frames[-1].event is not None and frames[-1].event["outcome"] == "completed"
        return server.value("talker_llm_tokens_total", kind="prompt") - before

    with chat_stack.connect() as client:
        client.send(type="config")
        first = client.until("ready")[-1].event
        assert first is not None
        prompt_tokens_of(client, "My name is Ada.")
    with chat_stack.connect() as client:
        client.send(type="config", session_id=first["session_id"])
        resumed = client.until("ready")[-1].event
        assert resumed is not None and resumed["session_id"] == first["session_id"]
        with_history = prompt_tokens_of(client, "What is my name?")
        client.send(type="config", session_id="made-up-by-the-client")
        other = client.until("ready")[-1].event
        assert other is not None and other["session_id"] not in (first["session_id"], "made-up-by-the-client")
        fresh = prompt_tokens_of(client, "What is my name?")
    # The resumed turn sent the earlier exchange along ("My name is Ada." + "Noted."): a longer prompt.
    assert with_history > fresh > 0
