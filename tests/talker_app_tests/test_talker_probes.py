"""Startup that cannot succeed: the probes must say so instead of looking healthy forever."""

from __future__ import annotations

import pytest
import torch
from fastapi.testclient import TestClient
from talker.app import create_app
from talker.settings import Settings

from stack.procs import poll_until


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a box without CUDA to make TALKER_DEVICE=cuda fail")
def test_talker_failed_engine_load_fails_both_probes() -> None:
    app = create_app(Settings(device="cuda", enable_piper=False, admin_token=None))
    with TestClient(app, raise_server_exceptions=False) as client:  # the lifespan starts the (doomed) load
        poll_until(lambda: client.get("/healthz").status_code == 503, timeout=30, what="/healthz to report failure")
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["status"] == "failed"
        assert "cuda" not in client.get("/healthz").text.lower()  # the reason is in the log, not the response
        assert client.post("/v1/tts", json={"text": "hi"}).status_code == 503
        assert "talker_ready 0.0" in client.get("/metrics").text
