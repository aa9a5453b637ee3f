"""The llm_* faults of /admin/faults in the LLM stage (talker.llm) against the LLM stand-in: what an alert drill
makes the stage do, and what the metrics then say."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest
from llm_standin.server import LLMStandin
from talker.faults import FaultConfig, FaultInjector
from talker.llm import LLMClient, LLMConfig, LLMError, LLMOutcome, LLMResult
from talker.metrics import TalkerMetrics

Start = Callable[..., LLMStandin]
USER = [{"role": "user", "content": "Say hello."}]


def faulted_client(standin: LLMStandin, metrics: TalkerMetrics, faults: FaultInjector,
                   timeout_s: float = 5.0) -> LLMClient:
    config = LLMConfig(base_url=standin.openai_base_url, model="standin-chat", timeout_s=timeout_s)
    return LLMClient(config, on_result=metrics.observe_llm_result, faults=faults)


def run_turns(client: LLMClient, turns: int = 1) -> list[LLMResult]:
    """`turns` requests one after the other; each result, failed or not. The client is closed after."""
    async def run() -> list[LLMResult]:
        results = []
        try:
            for _ in range(turns):
                reply = client.stream(USER)
                try:
                    async with reply:
                        async for _delta in reply:
                            pass
                except LLMError:
                    pass
                results.append(reply.result)
        finally:
            await client.aclose()
        return results

    return asyncio.run(run())


def injector(**config: float) -> FaultInjector:
    faults = FaultInjector(rng=random.Random(11))
    faults.set(FaultConfig(**config))  # type: ignore[arg-type]
    return faults


def test_llm_extra_latency_lands_in_the_time_to_first_token(llm_standin: Start) -> None:
    standin = llm_standin(replies=["Hello there."], first_token_delay=0.05, tokens_per_second=200)
    metrics = TalkerMetrics(tts_engine="espeak")
    [result] = run_turns(faulted_client(standin, metrics, injector(llm_extra_latency_ms=600)))
    assert result.outcome is LLMOutcome.COMPLETED and result.text == "Hello there."
    assert result.time_to_first_token_s is not None
    assert 0.65 <= result.time_to_first_token_s < 0.65 + 0.3  # the injected wait plus the stand-in's own delay
    r = metrics.registry
    # The histogram's buckets show it: above 0.5 s, within 1 s.
    assert r.get_sample_value("talker_llm_time_to_first_token_seconds_bucket", {"le": "0.5"}) == 0
    assert r.get_sample_value("talker_llm_time_to_first_token_seconds_bucket", {"le": "1.0"}) == 1
    assert r.get_sample_value("talker_llm_requests_total", {"outcome": "completed"}) == 1


def test_llm_extra_latency_past_the_timeout_is_a_timeout(llm_standin: Start) -> None:
    standin = llm_standin(first_token_delay=0.0)
    metrics = TalkerMetrics(tts_engine="espeak")
    [result] = run_turns(faulted_client(standin, metrics, injector(llm_extra_latency_ms=5000), timeout_s=0.3))
    assert result.outcome is LLMOutcome.TIMEOUT and result.time_to_first_token_s is None
    assert 0.3 <= result.duration_s < 1.0  # the client's timeout, not the whole injected wait
    assert standin.requests == []
    assert metrics.registry.get_sample_value("talker_llm_requests_total", {"outcome": "timeout"}) == 1


def test_llm_error_rate_one_fails_every_request_as_upstream_error_without_calling_it(llm_standin: Start) -> None:
    standin = llm_standin(first_token_delay=0.0)
    metrics = TalkerMetrics(tts_engine="espeak")
    results = run_turns(faulted_client(standin, metrics, injector(llm_error_rate=1.0)), turns=3)
    assert [(r.outcome, r.status_code, r.text) for r in results] == [(LLMOutcome.UPSTREAM_ERROR, 500, "")] * 3
    assert "injected" in results[0].detail
    assert standin.requests == []  # an injected failure costs the upstream nothing
    r = metrics.registry
    assert r.get_sample_value("talker_llm_requests_total", {"outcome": "upstream_error"}) == 3
    assert r.get_sample_value("talker_llm_requests_total", {"outcome": "completed"}) == 0
    assert r.get_sample_value("talker_llm_time_to_first_token_seconds_count") == 0


def test_llm_error_rate_fails_that_fraction_and_clearing_restores(llm_standin: Start) -> None:
    standin = llm_standin(replies=["Ok."], first_token_delay=0.0, tokens_per_second=1000)
    metrics = TalkerMetrics(tts_engine="espeak")
    faults = injector(llm_error_rate=0.5)
    outcomes = [r.outcome for r in run_turns(faulted_client(standin, metrics, faults), turns=40)]
    failed = outcomes.count(LLMOutcome.UPSTREAM_ERROR)
    assert 10 <= failed <= 30 and outcomes.count(LLMOutcome.COMPLETED) == 40 - failed
    assert len(standin.requests) == 40 - failed
    faults.clear()
    outcomes = [r.outcome for r in run_turns(faulted_client(standin, metrics, faults), turns=5)]
    assert outcomes == [LLMOutcome.COMPLETED] * 5


@pytest.mark.parametrize("kind", ["llm_extra_latency_ms", "llm_error_rate"])
def test_llm_faults_are_their_own_kinds(kind: str) -> None:
    config = FaultConfig(**{kind: 0.5})  # type: ignore[arg-type]
    active = config.active_kinds()
    assert active == {"error_rate": False, "extra_latency": False, "not_ready": False,
                      "llm_extra_latency": kind == "llm_extra_latency_ms", "llm_error_rate": kind == "llm_error_rate"}
    assert injector(llm_error_rate=1.0).should_fail() is False  # /v1 synthesis requests are not failed by it
