"""The conversation is warm when talker says it is ready: the first chat turn pays neither the openai SDK's import
(the LLM client) nor the pocketsphinx model's load (only loaded when ASR is local).

A real `python -m talker` per configuration. What is loaded is read where an operator reads it: /readyz's
`conversation`, `talker_model_load_seconds{engine}` and the JSON log lines that talker writes at each load
("conversation ready" when the LLM client is made, "pocketsphinx model loaded" when the model is), counted
before and after the first turns: a turn that loaded anything itself would add a line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from chat_tests.asr_speech import KEY_WORDS, speech_file
from chat_tests.chat_ws_client import API_KEY, ChatStack, Frame
from fastapi.testclient import TestClient
from llm_standin.server import LLMStandin
from talker.app import create_app
from talker.settings import Settings
from talker_app_tests.conftest import run_talker
from talker_app_tests.talker_server import TalkerServer
from talker_app_tests.test_talker_limits import StuckModelPipeline

from stack.procs import poll_until

FRAME_BYTES = 8192
LOAD_LINES = ("conversation ready", "pocketsphinx model loaded")


@pytest.fixture
def standin() -> Iterator[LLMStandin]:
    with LLMStandin(replies=["It is sunny. Enjoy your day."], first_token_delay=0.05,
                    tokens_per_second=50.0) as running:
        yield running


def load_lines(server: TalkerServer) -> dict[str, int]:
    counts = dict.fromkeys(LOAD_LINES, 0)
    for line in server.proc.log_path.read_text().splitlines():
        try:
            message = json.loads(line).get("msg")
        except ValueError:
            continue
        if message in counts:
            counts[message] += 1
    return counts


def model_loads(server: TalkerServer) -> dict[str, float]:
    return {engine: server.value("talker_model_load_seconds", engine=engine) for engine in ("llm_client",
                                                                                           "pocketsphinx")}


def events(frames: list[Frame], kind: str) -> list[dict]:
    return [f.event for f in frames if f.type == kind and f.event is not None]


def test_the_first_turns_after_readiness_load_nothing(tmp_path_factory: pytest.TempPathFactory,
                                                      standin: LLMStandin) -> None:
    # Without Piper the engines load faster than the conversation warms: readiness must wait for the warm-up.
    with run_talker(tmp_path_factory, "chat_warm", TALKER_LLM_BASE_URL=standin.openai_base_url,
                    TALKER_API_KEYS=API_KEY, TALKER_ENABLE_PIPER="false") as server:
        # run_talker returned on the first /readyz 200: nothing has talked to the conversation yet.
        ready = httpx.get(f"{server.url}/readyz", timeout=10).json()
        assert ready["ready"] is True and ready["conversation"] == "warm", ready
        assert load_lines(server) == {"conversation ready": 1, "pocketsphinx model loaded": 1}
        loads = model_loads(server)
        assert all(seconds > 0 for seconds in loads.values()), loads

        wav = speech_file("wav")
        with ChatStack(talker=server, llm=standin).connect() as client:
            client.send(type="user_audio_start", format="audio/wav")
            for start in range(0, len(wav), FRAME_BYTES):
                client.send_raw(wav[start:start + FRAME_BYTES])
            client.send(type="user_audio_end")
            frames = client.until("turn_end", timeout=120)
            _, typed = client.turn("And tomorrow?")
        transcript = events(frames, "transcript")
        assert len(transcript) == 1 and all(word in transcript[0]["text"] for word in KEY_WORDS), transcript
        for turn in (frames, typed):
            assert turn[-1].event is not None and turn[-1].event["outcome"] == "completed", turn[-1].event
        # The turns used what start-up loaded: no second client, no second model, the load times unchanged.
        assert load_lines(server) == {"conversation ready": 1, "pocketsphinx model loaded": 1}
        assert model_loads(server) == loads


def test_with_a_remote_asr_only_the_llm_client_is_warmed(tmp_path_factory: pytest.TempPathFactory,
                                                         standin: LLMStandin) -> None:
    """TALKER_ASR_BASE_URL set: no local model is loaded at start (nor ever needed); the openai SDK is."""
    with run_talker(tmp_path_factory, "chat_warm_remote_asr", TALKER_LLM_BASE_URL=standin.openai_base_url,
                    TALKER_ASR_BASE_URL="http://127.0.0.1:9/v1", TALKER_ENABLE_PIPER="false") as server:
        ready = httpx.get(f"{server.url}/readyz", timeout=10).json()
        assert ready["ready"] is True and ready["conversation"] == "warm", ready
        assert load_lines(server) == {"conversation ready": 1, "pocketsphinx model loaded": 0}
        loads = model_loads(server)
        assert loads["llm_client"] > 0 and loads["pocketsphinx"] == 0, loads


def test_readiness_waits_for_the_warm_up_when_the_engines_load_faster(caplog: pytest.LogCaptureFixture) -> None:
    """With real engines the warm-up and the engines' load take about as long (~0.9 s each here), so which ends
    first is luck. A stand-in for the engines that loads at once (the service, limiter and conversation are real)
    makes it certain: /readyz answers 200 only once the model has been loaded."""
    app = create_app(Settings(admin_token=None, enable_piper=False, metrics_port=None), pipeline=StuckModelPipeline())
    with caplog.at_level(logging.INFO, logger="talker"), TestClient(app) as client:
        first = poll_until(lambda: (r := client.get("/readyz")).status_code == 200 and r.json(), timeout=60,
                           interval=0.01, what="ready")
        loaded = [r.getMessage() for r in caplog.records if r.getMessage() in LOAD_LINES]
        assert first["conversation"] == "warm"
        assert sorted(loaded) == sorted(LOAD_LINES)
