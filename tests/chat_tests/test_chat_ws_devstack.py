"""`make dev` (devtools.devstack) gives a working conversation: with no TALKER_LLM_BASE_URL it starts the LLM
stand-in and points talker at it; a typed turn on /v1/chat/ws is answered with text and speech."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from websockets.sync.client import connect

from devtools.devstack import DevStack


def test_dev_stack_starts_the_llm_standin_and_talker_answers_through_it(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TALKER_LLM_BASE_URL", "TALKER_API_KEYS", "TALKER_API_KEYS_FILE"):
        monkeypatch.delenv(name, raising=False)
    dev = DevStack(ports="auto", workdir=tmp_path)
    try:
        dev.write_secret_files()
        dev.start_llm()
        dev.start_talker()
        assert "llm-standin" in dev.procs and dev.llm_base_url == f"{dev.urls['llm']}/v1"
        assert f"LLM               {dev.llm_base_url}   (stand-in" in dev.summary()
        url = dev.urls["talker"].replace("http://", "ws://") + "/v1/chat/ws"
        with connect(url, open_timeout=10) as ws:
            ws.send(json.dumps({"type": "user_text", "text": "Hello, who are you?"}))
            kinds, reply = [], ""
            while not kinds or kinds[-1] != "turn_end":
                message = ws.recv(timeout=60)
                if isinstance(message, bytes):
                    kinds.append("binary")
                    continue
                event = json.loads(message)
                kinds.append(event["type"])
                reply += event.get("text", "") if event["type"] == "reply_delta" else ""
                if event["type"] == "turn_end":
                    assert event["outcome"] == "completed", event
        assert reply and "binary" in kinds
    finally:
        dev.stop()


def test_dev_stack_leaves_a_named_llm_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TALKER_LLM_BASE_URL", "http://llm.example:8000/v1")
    dev = DevStack(ports="auto", workdir=tmp_path)
    try:
        dev.start_llm()
        assert "llm-standin" not in dev.procs and dev.llm_base_url == "http://llm.example:8000/v1"
    finally:
        dev.stop()
