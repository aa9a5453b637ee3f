"""`make smoke`'s conversation client (stack.chat_client: the standard library alone, it runs in the relay image)
against a real talker and the LLM stand-in: what the LLM drill relies on. A typed turn comes back whole (reply,
speech, timings), the API key travels as a `talker.key.<key>` subprotocol, a wrong or missing key is a clear
error that never shows the key, and a failed LLM is the turn's outcome, not an exception."""

from __future__ import annotations

import pytest
from chat_tests.chat_ws_client import API_KEY, ChatStack

from stack.api_key import ClientKey
from stack.chat_client import ChatConnection, ChatError

REPLY = "Fine, thanks. And you?"


def test_smoke_chat_client_holds_a_conversation_with_the_key_as_subprotocol(chat_stack: ChatStack) -> None:
    chat_stack.llm.replies = [REPLY]
    before = chat_stack.talker.value("talker_chat_turns_total", input="text", outcome="completed")
    with ChatConnection.open(chat_stack.talker.url, ClientKey(API_KEY, "test")) as chat:
        turns = [chat.turn("How are you?"), chat.turn("Good, thank you.")]  # one socket, turn after turn
    for turn in turns:
        assert turn.outcome == "completed" and turn.reply == REPLY and not turn.errors, turn
        # 24 kHz 16-bit mono PCM: espeak-ng speaks the four words in about 1 to 3 s.
        assert 24_000 * 2 * 0.5 < turn.audio_bytes < 24_000 * 2 * 5, turn.audio_bytes
        assert 0.25 <= turn.timings["llm_ttft"] < 5.0 and turn.timings["total"] >= turn.timings["llm_ttft"]
    after = chat_stack.talker.value("talker_chat_turns_total", input="text", outcome="completed")
    assert after - before == 2


def test_smoke_chat_client_refusals_name_the_problem_and_never_the_key(chat_stack: ChatStack) -> None:
    wrong = "not-the-key-5b1e"
    with pytest.raises(ChatError, match="403 Forbidden") as refused:
        ChatConnection.open(chat_stack.talker.url, ClientKey(wrong, "test"))
    assert wrong not in str(refused.value) and "API key" in str(refused.value)
    with ChatConnection.open(chat_stack.talker.url) as chat, pytest.raises(ChatError, match="code 4401"):
        chat.turn("Hello?")  # no key: the first message is not an auth message
    with pytest.raises(ChatError, match="cannot connect"):
        ChatConnection.open("http://127.0.0.1:9", timeout=2)


def test_smoke_chat_client_reports_a_failed_llm_as_the_turns_outcome(chat_stack: ChatStack) -> None:
    chat_stack.talker.set_faults(llm_error_rate=1.0)
    try:
        with ChatConnection.open(chat_stack.talker.url, ClientKey(API_KEY, "test")) as chat:
            turn = chat.turn("Are you there?")
    finally:
        chat_stack.talker.set_faults()
    assert turn.outcome == "llm_error" and turn.reply == "" and turn.audio_bytes == 0
    assert turn.errors and turn.errors[0]["stage"] == "llm" and turn.errors[0]["outcome"] == "upstream_error"
    assert turn.describe().startswith("llm_error: ")
