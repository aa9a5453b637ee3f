"""/v1/chat/ws and the slot limiter: a turn takes ONE synthesis slot up front and keeps it until it is over.

A real talker with a single slot and no queue (TALKER_MAX_CONCURRENCY=1, TALKER_MAX_QUEUE=0), so the limiter
is full whenever one turn produces; the real LLM stand-in answers LONG_REPLY (three sentences) at 8 tokens/s.
What a user sees: their answer is never cut between sentences by someone else's load, a second user is told
"busy" up front (not mid-answer) and gets through once the first answer is over, and every way a turn ends
(done, barge-in, the client gone, the LLM failing) gives the slot back (talker_active_sessions, /metrics).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from chat_tests.chat_ws_client import API_KEY, ChatStack, Frame
from chat_tests.conftest import FIRST_TOKEN_DELAY_S, LONG_REPLY
from llm_standin.server import LLMStandin
from talker.sentences import SentenceCutter
from talker_app_tests.conftest import run_talker

from stack.procs import poll_until

HEADERS = {"Authorization": f"Bearer {API_KEY}"}
# Injected into every synthesis job while other clients knock: a /v1/tts that got the slot would answer this
# much later than the turn_end sent as the slot came free, so "answered before turn_end" means "while held".
KNOCK_LATENCY_MS = 300


@pytest.fixture(scope="module")
def one_slot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatStack]:
    standin = LLMStandin(replies=[LONG_REPLY], first_token_delay=FIRST_TOKEN_DELAY_S, tokens_per_second=8.0)
    standin.start()
    try:
        with run_talker(tmp_path_factory, "chat_one_slot", TALKER_LLM_BASE_URL=standin.openai_base_url,
                        TALKER_API_KEYS=API_KEY, TALKER_MAX_CONCURRENCY="1", TALKER_MAX_QUEUE="0") as server:
            yield ChatStack(talker=server, llm=standin)
    finally:
        standin.stop()


@pytest.fixture
def stack(one_slot: ChatStack) -> Iterator[ChatStack]:
    one_slot.llm.replies, one_slot.llm.fault = [LONG_REPLY], None
    yield one_slot
    one_slot.llm.fault = None
    one_slot.talker.clear_faults_and_drain()


def events(frames: list[Frame], kind: str) -> list[dict]:
    return [f.event for f in frames if f.type == kind and f.event is not None]


def slots_held(stack: ChatStack) -> float:
    return stack.talker.value("talker_active_sessions")


def assert_refused_up_front(frames: list[Frame]) -> None:
    assert [f.type for f in frames] == ["turn_start", "error", "turn_end"], [f.type for f in frames]
    error = frames[1].event
    assert error is not None and error["status"] == 429 and error["retry_after_s"] >= 1
    assert frames[-1].event is not None and frames[-1].event["outcome"] == "refused"


def spoken_alone(stack: ChatStack, text: str) -> int:
    """Bytes of PCM the talker makes for `text` on its own (the slot must be free)."""
    response = httpx.post(f"{stack.talker.url}/v1/audio/speech", headers=HEADERS, json={
        "model": "espeak", "voice": "en-us", "input": text, "response_format": "pcm"}, timeout=30)
    assert response.status_code == 200, response.text
    return len(response.content)


def test_a_full_limiter_never_cuts_an_answer_between_its_sentences(stack: ChatStack) -> None:
    """While one turn answers, other clients keep knocking (/v1/tts, and another conversation): every one of
    them is refused, and the answer goes on to its last sentence, all of it spoken."""
    knocks: list[tuple[float, int]] = []  # (answered at, status)
    stop = threading.Event()

    def knock() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                response = client.post(f"{stack.talker.url}/v1/tts", json={"text": "Me too."}, headers=HEADERS)
                knocks.append((time.perf_counter(), response.status_code))
                stop.wait(0.05)  # pace the knocking: a few per sentence is enough, the box is shared

    with stack.connect() as client, stack.connect() as other:
        client.send(type="user_text", text="Tell me something long.")
        head = client.until("reply_delta")  # the slot was taken before the LLM was asked
        stack.talker.set_faults(error_rate=0.0, extra_latency_ms=KNOCK_LATENCY_MS, not_ready=False)
        knocker = threading.Thread(target=knock, name="knocker")
        knocker.start()
        try:
            _, refused = other.turn("Me too, please.")
            rest = client.until("turn_end")
        finally:
            stop.set()
            knocker.join(timeout=30)
    frames = head + rest
    turn_end = frames[-1]
    assert turn_end.event is not None and turn_end.event["outcome"] == "completed", turn_end.event
    assert not events(frames, "error")
    assert "".join(e["text"] for e in events(frames, "reply_delta")) == LONG_REPLY
    assert_refused_up_front(refused)
    during = [status for answered, status in knocks if answered < turn_end.at]
    assert len(during) >= 5 and set(during) == {429}, during
    stack.talker.clear_faults_and_drain()
    # Every sentence was spoken in full: as many bytes as speaking each one alone (resampler rounding aside).
    cutter = SentenceCutter(first_max_chars=40, max_chars=120)
    sentences = [*cutter.feed(LONG_REPLY), *cutter.flush()]
    assert len(sentences) == 3
    spoken = sum(len(f.data or b"") for f in frames if f.type == "binary")
    assert abs(spoken - sum(spoken_alone(stack, s) for s in sentences)) <= 64 * len(sentences)


def test_with_one_slot_a_second_conversation_is_refused_up_front_and_gets_through_after(stack: ChatStack) -> None:
    stack.llm.clear()
    refused_before = stack.talker.value("talker_chat_turns_total", input="text", outcome="refused")
    with stack.connect() as first, stack.connect() as second:
        first.send(type="user_text", text="Tell me something long.")
        first.until("reply_delta")
        assert slots_held(stack) == 1
        _, refused = second.turn("Am I next?")
        assert_refused_up_front(refused)  # no reply_delta, no media: nothing was said, no LLM request made
        assert len(stack.llm.requests) == 1
        frames = first.until("turn_end")
        assert frames[-1].event is not None and frames[-1].event["outcome"] == "completed"
        assert "".join(e["text"] for e in events(frames, "reply_delta")) in LONG_REPLY
        # The slot is given back before turn_end is sent: the metric and the next turn see it free at once.
        assert slots_held(stack) == 0
        stack.llm.replies = ["You are next."]
        _, frames = second.turn("Am I next now?")
    assert frames[-1].event is not None and frames[-1].event["outcome"] == "completed"
    assert "".join(e["text"] for e in events(frames, "reply_delta")) == "You are next."
    assert len(stack.llm.requests) == 2
    assert stack.talker.value("talker_chat_turns_total", input="text", outcome="refused") == refused_before + 1
    assert slots_held(stack) == 0


def test_barge_in_hands_the_slot_to_the_new_turn(stack: ChatStack) -> None:
    with stack.connect() as client:
        client.send(type="user_text", text="Tell me something long.")
        client.until("binary")  # speaking its first sentence, the LLM still writing
        stack.llm.replies = ["Stopped."]
        _, frames = client.turn("Stop.")  # one slot, no queue: the new turn gets it only if the old let go
    new = frames[next(i for i, f in enumerate(frames) if f.type == "turn_start"):]
    assert not events(new, "error")
    assert new[-1].event is not None and new[-1].event["outcome"] == "completed"
    assert "".join(e["text"] for e in events(new, "reply_delta")) == "Stopped."
    assert slots_held(stack) == 0


def test_a_client_that_leaves_mid_answer_frees_the_slot(stack: ChatStack) -> None:
    cancelled_before = stack.talker.value("talker_chat_turns_total", input="text", outcome="cancelled")
    with stack.connect() as client:
        client.send(type="user_text", text="Tell me something long.")
        client.until("binary")
        assert slots_held(stack) == 1
    poll_until(lambda: slots_held(stack) == 0, timeout=10, what="the left client's turn to free its slot")
    assert stack.talker.value("talker_chat_turns_total", input="text", outcome="cancelled") == cancelled_before + 1
    stack.llm.replies = ["Welcome back."]
    with stack.connect() as client:
        _, frames = client.turn("Anyone there?")
    assert frames[-1].event is not None and frames[-1].event["outcome"] == "completed"


def test_a_failed_llm_frees_the_slot(stack: ChatStack) -> None:
    stack.llm.fault = "error-500"
    with stack.connect() as client:
        _, frames = client.turn("Hello?")
        assert frames[-1].event is not None and frames[-1].event["outcome"] == "llm_error"
        assert slots_held(stack) == 0
        stack.llm.fault = None
        stack.llm.replies = ["Working again."]
        _, frames = client.turn("Hello again?")
    assert frames[-1].event is not None and frames[-1].event["outcome"] == "completed"

