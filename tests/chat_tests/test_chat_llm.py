"""The LLM stage (talker.llm) against the LLM stand-in running as a real HTTP server: what a chat turn sees."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import pytest
from llm_standin.server import LLMStandin, prompt_tokens, tokenize
from talker.llm import LLM_OUTCOMES, LLMClient, LLMConfig, LLMError, LLMOutcome, LLMResult
from talker.metrics import TalkerMetrics
from talker.settings import Settings

from stack.procs import free_port, poll_until

Start = Callable[..., LLMStandin]
REPLY = "Hello there. It costs 3.5 yuan! 你好，欢迎光临。我们开始吧？"
USER = [{"role": "user", "content": "Say hello."}]


def client_for(standin: LLMStandin, *, model: str = "standin-chat", timeout_s: float = 5.0, key: str | None = None,
               results: list[LLMResult] | None = None) -> LLMClient:
    config = LLMConfig(base_url=standin.openai_base_url, model=model, api_key=key, system_prompt="Be brief.",
                       max_tokens=256, timeout_s=timeout_s)
    return LLMClient(config, on_result=None if results is None else results.append)


async def collect(client: LLMClient, conversation: list[dict[str, str]] = USER) -> tuple[list[tuple[float, str]],
                                                                                        LLMResult, float]:
    """(arrival time, delta) for each delta, the result, and the total time; the client is closed after."""
    arrivals: list[tuple[float, str]] = []
    started = time.perf_counter()
    try:
        async with client.stream(conversation) as reply:
            async for delta in reply:
                arrivals.append((time.perf_counter() - started, delta))
        return arrivals, reply.result, time.perf_counter() - started
    finally:
        await client.aclose()


def failed(client: LLMClient) -> tuple[LLMResult, list[str], float]:
    deltas: list[str] = []

    async def run() -> None:
        try:
            async with client.stream(USER) as reply:
                async for delta in reply:
                    deltas.append(delta)
        finally:
            await client.aclose()

    started = time.perf_counter()
    with pytest.raises(LLMError) as caught:
        asyncio.run(run())
    return caught.value.result, deltas, time.perf_counter() - started


def test_llm_deltas_stream_in_order_and_the_first_arrives_long_before_the_last(llm_standin: Start) -> None:
    standin = llm_standin(replies=[REPLY], first_token_delay=0.2, tokens_per_second=25)
    results: list[LLMResult] = []
    arrivals, result, total = asyncio.run(collect(client_for(standin, results=results)))
    tokens = tokenize(REPLY)
    assert [delta for _, delta in arrivals] == tokens  # every token, in order, none merged or lost
    assert result.text == REPLY and result.outcome is LLMOutcome.COMPLETED and result.finish_reason == "stop"
    generation = (len(tokens) - 1) / 25  # the stand-in's time from first to last token
    first, last = arrivals[0][0], arrivals[-1][0]
    # Generous bounds: a stall of the shared 2-core box delays single deltas by up to ~0.3 s.
    assert generation - 0.3 <= last - first <= generation + 0.3
    assert first < total - 0.5 * generation  # streamed: not buffered until the stand-in finished
    assert results == [result]  # on_result: once per request
    assert standin.requests[0]["outcome"] == "completed" and standin.requests[0]["stream"] is True


@pytest.mark.parametrize("delay", [0.05, 0.4])
def test_llm_time_to_first_token_is_the_servers_first_token_delay(llm_standin: Start, delay: float) -> None:
    standin = llm_standin(replies=["One. Two."], first_token_delay=0.0, tokens_per_second=50)
    client = client_for(standin)

    async def ttfts() -> list[float]:
        measured = []
        try:
            for attempt in range(4):
                standin.first_token_delay = 0.0 if attempt == 0 else delay  # the first one warms the connection
                async with client.stream(USER) as reply:
                    async for _ in reply:
                        pass
                assert reply.result.time_to_first_token_s is not None
                measured.append(reply.result.time_to_first_token_s)
        finally:
            await client.aclose()
        return measured[1:]

    measured = asyncio.run(ttfts())
    # From the request sent to the first content delta: the delay plus loopback HTTP and parsing (about 3 ms
    # here); the median of three, so one stall of the shared box does not decide.
    assert all(t >= delay for t in measured), measured
    assert sorted(measured)[1] <= delay + 0.05, measured


def test_llm_usage_is_counted_from_the_usage_chunk_and_reaches_the_metrics(llm_standin: Start) -> None:
    standin = llm_standin(replies=[REPLY], first_token_delay=0.0, tokens_per_second=500)
    metrics = TalkerMetrics(tts_engine="espeak")
    client = client_for(standin)
    client.on_result = metrics.observe_llm_result
    conversation = [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello!"},
                    {"role": "user", "content": "讲个故事。"}]
    _, result, _ = asyncio.run(collect(client, conversation))
    sent = [{"role": "system", "content": "Be brief."}, *conversation]
    assert result.prompt_tokens == prompt_tokens(sent)  # the stand-in's own count of what it received
    assert result.completion_tokens == len(tokenize(REPLY)) == result.deltas
    r = metrics.registry
    assert r.get_sample_value("talker_llm_tokens_total", {"kind": "prompt"}) == result.prompt_tokens
    assert r.get_sample_value("talker_llm_tokens_total", {"kind": "completion"}) == result.completion_tokens
    assert r.get_sample_value("talker_llm_requests_total", {"outcome": "completed"}) == 1
    assert r.get_sample_value("talker_llm_time_to_first_token_seconds_count") == 1
    assert sum(r.get_sample_value("talker_llm_requests_total", {"outcome": o}) or 0 for o in LLM_OUTCOMES) == 1


def test_llm_max_tokens_stops_the_answer_with_finish_reason_length(llm_standin: Start) -> None:
    standin = llm_standin(replies=[REPLY], first_token_delay=0.0, tokens_per_second=500)
    client = LLMClient(LLMConfig(base_url=standin.openai_base_url, model="standin-chat", max_tokens=3))
    _, result, _ = asyncio.run(collect(client))
    assert result.outcome is LLMOutcome.COMPLETED and result.finish_reason == "length"
    assert result.text == "".join(tokenize(REPLY)[:3]) and result.completion_tokens == 3


@pytest.mark.parametrize(("model", "status"), [("standin-error-500", 500), ("standin-error-429", 429)])
def test_llm_http_error_is_upstream_error_and_never_retried(llm_standin: Start, model: str, status: int) -> None:
    standin = llm_standin(first_token_delay=0.0)
    result, deltas, _ = failed(client_for(standin, model=model))
    assert (result.outcome, result.status_code, deltas) == (LLMOutcome.UPSTREAM_ERROR, status, [])
    assert result.detail == f"the LLM server answered HTTP {status}"
    assert len(standin.requests) == 1  # the SDK retries 429 and 5xx by default; we must not


def test_llm_timeout_waiting_for_the_first_token(llm_standin: Start) -> None:
    standin = llm_standin(first_token_delay=3.0)
    result, deltas, elapsed = failed(client_for(standin, timeout_s=0.3))
    assert result.outcome is LLMOutcome.TIMEOUT and deltas == [] and result.time_to_first_token_s is None
    assert 0.3 <= elapsed < 1.5
    assert len(standin.requests) == 1


def test_llm_timeout_between_two_tokens(llm_standin: Start) -> None:
    standin = llm_standin(replies=["One two three"], first_token_delay=0.0, tokens_per_second=1)
    result, deltas, elapsed = failed(client_for(standin, timeout_s=0.3))
    assert result.outcome is LLMOutcome.TIMEOUT and deltas == ["One"] and result.completion_tokens == 1
    assert 0.3 <= elapsed < 0.9 and len(standin.requests) == 1


def test_llm_stream_cut_midway_keeps_what_arrived_and_is_not_retried(llm_standin: Start) -> None:
    standin = llm_standin(replies=[REPLY], first_token_delay=0.0, tokens_per_second=200)
    results: list[LLMResult] = []
    result, deltas, _ = failed(client_for(standin, model="standin-cut", results=results))
    assert result.outcome is LLMOutcome.STREAM_CUT and result.finish_reason is None
    half = len(tokenize(REPLY)) // 2
    assert deltas == tokenize(REPLY)[:half] and result.text == "".join(deltas)
    assert result.completion_tokens == half  # no usage chunk came: the deltas received are counted
    assert len(standin.requests) == 1 and standin.requests[0]["outcome"] == "cut"
    assert results == [result]


def test_llm_nothing_listening_is_a_connection_error() -> None:
    client = LLMClient(LLMConfig(base_url=f"http://127.0.0.1:{free_port()}/v1", model="m", timeout_s=2))
    result, _, elapsed = failed(client)
    assert result.outcome is LLMOutcome.CONNECTION_ERROR and elapsed < 1.5


def test_llm_leaving_early_cancels_the_stream_upstream(llm_standin: Start) -> None:
    """Barge-in: the caller stops after the first delta; the HTTP stream closes, the stand-in sees it go."""
    standin = llm_standin(replies=[REPLY * 4], first_token_delay=0.0, tokens_per_second=20)
    results: list[LLMResult] = []
    client = client_for(standin, results=results)

    async def first_delta_only() -> LLMResult:
        try:
            async with client.stream(USER) as reply:
                async for _ in reply:
                    break
            return reply.result
        finally:
            await client.aclose()

    started = time.perf_counter()
    result = asyncio.run(first_delta_only())
    assert time.perf_counter() - started < 1.0  # the whole reply would take > 4 s
    assert result.outcome is LLMOutcome.CANCELLED and result.deltas == 1 and results == [result]
    poll_until(lambda: standin.requests[0]["outcome"] == "client_gone", timeout=5, interval=0.05,
               what="the stand-in to notice the closed stream")
    assert standin.requests[0]["completion_tokens"] < 10


def test_llm_cancelling_the_task_records_cancelled(llm_standin: Start) -> None:
    standin = llm_standin(first_token_delay=2.0)
    results: list[LLMResult] = []
    client = client_for(standin, results=results)

    async def run() -> None:
        async def consume() -> None:
            async with client.stream(USER) as reply:
                async for _ in reply:
                    pass

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.2)  # the request is in flight (the stand-in holds its first token for 2 s)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await client.aclose()

    asyncio.run(run())
    assert [r.outcome for r in results] == [LLMOutcome.CANCELLED]


def test_llm_api_key_goes_as_bearer_and_is_never_logged(llm_standin: Start, caplog: pytest.LogCaptureFixture) -> None:
    key = "sk-test-0123456789abcdef"
    standin = llm_standin(api_keys=[key], first_token_delay=0.0, tokens_per_second=500)
    caplog.set_level(logging.DEBUG)  # the SDK's and httpx's debug logs too
    _, result, _ = asyncio.run(collect(client_for(standin, key=key)))
    assert result.outcome is LLMOutcome.COMPLETED
    assert standin.requests[-1]["key_sent"] and standin.requests[-1]["key_valid"]
    wrong, _, _ = failed(client_for(standin, key="sk-wrong"))
    assert (wrong.outcome, wrong.status_code) == (LLMOutcome.UPSTREAM_ERROR, 401)
    assert any(r.name == "talker.llm" for r in caplog.records)
    logged = "\n".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)
    assert key not in logged and "sk-wrong" not in logged
    assert key not in repr(LLMConfig.from_settings(Settings(llm_api_key=key)))


def test_llm_config_from_settings_reads_the_key_file(tmp_path: pytest.TempPathFactory) -> None:
    key_file = tmp_path / "llm_key"  # type: ignore[operator]
    key_file.write_text("sk-from-file\n")
    config = LLMConfig.from_settings(Settings(llm_api_key_file=key_file, llm_model="qwen2.5", llm_timeout_s=7))
    assert (config.api_key, config.model, config.timeout_s) == ("sk-from-file", "qwen2.5", 7)
    assert LLMConfig.from_settings(Settings()).api_key is None
    with pytest.raises(ValueError, match="not both"):
        Settings(llm_api_key="a", llm_api_key_file=key_file)
    with pytest.raises(ValueError, match="cannot read TALKER_LLM_API_KEY_FILE"):
        Settings(llm_api_key_file=key_file.with_name("missing"))
