"""Fixtures for the conversation tests: the LLM stand-in as a real HTTP server on a free port (a thread)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from chat_tests.chat_ws_client import API_KEY, ChatStack
from llm_standin.server import LLMStandin
from talker_app_tests.conftest import run_talker

FIRST_TOKEN_DELAY_S = 0.3
LONG_REPLY = ("Hello there. This is the second sentence of a longer answer, and it goes on for a while. "
              "A third sentence comes last.")


@pytest.fixture
def llm_standin() -> Iterator[Callable[..., LLMStandin]]:
    """start(**options) -> a running LLMStandin; every one started is stopped after the test."""
    started: list[LLMStandin] = []

    def start(**options: Any) -> LLMStandin:
        standin = LLMStandin(**options)
        standin.start()
        started.append(standin)
        return standin

    yield start
    for standin in started:
        standin.stop()


@pytest.fixture(scope="module")
def chat_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatStack]:
    """A real talker (`python -m talker`, API keys on) talking to a real LLM stand-in (its own thread, slow enough
    that a reply takes seconds: 0.3 s to the first token, then 8 tokens/s)."""
    standin = LLMStandin(replies=[LONG_REPLY], first_token_delay=FIRST_TOKEN_DELAY_S, tokens_per_second=8.0)
    standin.start()
    try:
        with run_talker(tmp_path_factory, "chat_talker", TALKER_LLM_BASE_URL=standin.openai_base_url,
                        TALKER_API_KEYS=API_KEY, TALKER_MAX_CONCURRENCY="2", TALKER_MAX_QUEUE="4") as server:
            yield ChatStack(talker=server, llm=standin)
    finally:
        standin.stop()
