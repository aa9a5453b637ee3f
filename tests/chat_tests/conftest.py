"""Fixtures for the conversation tests: the LLM stand-in as a real HTTP server on a free port (a thread)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from llm_standin.server import LLMStandin


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
