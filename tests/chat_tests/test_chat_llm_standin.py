"""The LLM stand-in speaks OpenAI's chat-completions contract: real clients work against it unmodified."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest
from llm_standin.server import DEFAULT_SCRIPT, OWNED_BY, LLMStandin, read_reply_file, tokenize

from stack.procs import ManagedProcess, free_port, poll_until, wait_http

Start = Callable[..., LLMStandin]
ROOT = Path(__file__).resolve().parents[2]
HELLO = [{"role": "user", "content": "Hello"}]


def test_standin_works_with_the_official_openai_client_streaming_and_not(llm_standin: Start) -> None:
    standin = llm_standin(replies=["Hello there. 你好！"], api_keys=["sk-demo"], first_token_delay=0.0,
                          tokens_per_second=500)
    client = openai.OpenAI(base_url=standin.openai_base_url, api_key="sk-demo", max_retries=0)
    models = client.models.list().data
    assert "standin-chat" in [m.id for m in models] and all("STAND-IN" in m.owned_by for m in models)
    completion = client.chat.completions.create(model="standin-chat", messages=HELLO)  # type: ignore[arg-type]
    assert completion.choices[0].message.content == "Hello there. 你好！"
    assert completion.choices[0].finish_reason == "stop" and completion.usage is not None
    assert completion.usage.completion_tokens == len(tokenize("Hello there. 你好！"))
    chunks = list(client.chat.completions.create(model="standin-chat", messages=HELLO, stream=True,  # type: ignore[arg-type]
                                                 stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello there. 你好！"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == chunks[-1].usage.prompt_tokens + chunks[-1].usage.completion_tokens
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=standin.openai_base_url, api_key="sk-other", max_retries=0).models.list()


def test_standin_stream_is_server_sent_events_ending_with_done(llm_standin: Start) -> None:
    standin = llm_standin(replies=["A b."], first_token_delay=0.0, tokens_per_second=500)
    body = {"model": "standin-chat", "messages": HELLO, "stream": True}
    with httpx.stream("POST", f"{standin.openai_base_url}/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines) and lines[-1] == "data: [DONE]"
    events = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert {e["object"] for e in events} == {"chat.completion.chunk"} and len({e["id"] for e in events}) == 1
    assert [e["choices"][0]["delta"].get("content") for e in events] == ["", "A", " b", ".", None]
    assert "usage" not in events[0]  # only with stream_options.include_usage


def test_standin_refuses_what_openai_refuses_in_openais_error_shape(llm_standin: Start) -> None:
    standin = llm_standin(api_keys=["k"])
    url = f"{standin.openai_base_url}/chat/completions"
    auth = {"Authorization": "Bearer k"}
    cases = [
        ({}, {"model": "standin-chat", "messages": HELLO}, 401, "invalid_api_key"),
        ({"Authorization": "Basic k"}, {"model": "standin-chat", "messages": HELLO}, 401, "invalid_api_key"),
        (auth, {"model": "gpt-9", "messages": HELLO}, 404, "model_not_found"),
        (auth, {"model": "standin-chat", "messages": []}, 400, None),
        (auth, {"model": "standin-chat", "messages": HELLO, "max_tokens": 0}, 400, None),
        (auth, {"messages": HELLO}, 400, None),
    ]
    for headers, body, status, code in cases:
        response = httpx.post(url, json=body, headers=headers)
        assert response.status_code == status, body
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["code"] == code
    assert [r["key_valid"] for r in standin.requests] == [False, False, True, True, True, True]
    # What the test hook shows of a request: never the key, never the messages.
    assert set(standin.requests[0]) == {"model", "stream", "status", "outcome", "key_sent", "key_valid",
                                        "completion_tokens"}


def test_standin_keeps_its_timing(llm_standin: Start) -> None:
    standin = llm_standin(replies=["one two three four five six seven eight nine ten"], first_token_delay=0.3,
                          tokens_per_second=20)
    client = openai.OpenAI(base_url=standin.openai_base_url, api_key="x", max_retries=0)
    client.models.list()  # the connection and the SDK's first-call work, outside the timing
    started = time.perf_counter()
    arrivals = [time.perf_counter() - started
                for chunk in client.chat.completions.create(model="standin-chat", messages=HELLO, stream=True)  # type: ignore[arg-type]
                if chunk.choices and chunk.choices[0].delta.content]
    assert len(arrivals) == 10
    # Bounds leave room for one stall of the shared 2-core box (up to ~0.3 s seen).
    assert 0.3 <= arrivals[0] <= 0.6
    assert 9 / 20 - 0.3 <= arrivals[-1] - arrivals[0] <= 9 / 20 + 0.3  # an absolute schedule: no drift
    started = time.perf_counter()
    client.chat.completions.create(model="standin-chat", messages=HELLO)  # type: ignore[arg-type]
    assert 0.3 + 9 / 20 <= time.perf_counter() - started <= 0.3 + 9 / 20 + 0.3  # the whole generation time


def test_standin_replies_in_turn_from_a_reply_file(tmp_path: Path) -> None:
    replies = tmp_path / "replies.txt"
    replies.write_text("First reply,\non two lines.\n\n\n第二个回答。\n")
    assert read_reply_file(replies) == ["First reply, on two lines.", "第二个回答。"]
    with LLMStandin(read_reply_file(replies), first_token_delay=0.0, tokens_per_second=1000) as standin:
        client = openai.OpenAI(base_url=standin.openai_base_url, api_key="x", max_retries=0)
        answers = [client.chat.completions.create(model="standin-chat", messages=HELLO).choices[0].message.content  # type: ignore[arg-type]
                   for _ in range(3)]
    assert answers == ["First reply, on two lines.", "第二个回答。", "First reply, on two lines."]
    assert any(any("\u4e00" <= c <= "\u9fff" for c in r) for r in DEFAULT_SCRIPT)  # the default script is bilingual
    assert any(r.isascii() for r in DEFAULT_SCRIPT)


def test_standin_runs_as_a_program_labelled_stand_in_with_env_settings(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "services/llm-standin"), "LLM_STANDIN_API_KEYS": "sk-env-key",
           "LLM_STANDIN_FAULT": "error-500", "LLM_STANDIN_FIRST_TOKEN_DELAY": "0"}
    argv = [sys.executable, "-m", "llm_standin", "--port", str(port)]
    with ManagedProcess("llm-standin", argv, log_dir=tmp_path, env=env) as proc:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz", timeout=15, proc=proc)
        models = httpx.get(f"{base}/v1/models", headers={"Authorization": "Bearer sk-env-key"}).json()
        assert {m["owned_by"] for m in models["data"]} == {OWNED_BY}
        response = httpx.post(f"{base}/v1/chat/completions", json={"model": "standin-chat", "messages": HELLO},
                              headers={"Authorization": "Bearer sk-env-key"})
        assert response.status_code == 500  # LLM_STANDIN_FAULT applies to every request
        # The request's log line is written after the answer went out: wait for it.
        def logged() -> str | None:
            text = proc.log_path.read_text()
            return text if "status=500" in text else None

        log = poll_until(logged, timeout=10, what="the stand-in's request log line")
    assert "STAND-IN" in log and "status=500" in log and "sk-env-key" not in log
