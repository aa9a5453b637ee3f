"""Webhook authentication: nobody without Alertmanager's bearer token pages on-call or feeds the heartbeat."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from dingtalk_relay.app import create_app
from dingtalk_relay.auth import WebhookAuthError, load_webhook_auth
from dingtalk_relay.settings import RelaySettings
from dingtalk_standin.server import DingTalkStandin
from fastapi.testclient import TestClient
from relay_tests.relay_helpers import AUTH, SIGNED_TOKEN, WEBHOOK_TOKEN, metric_value, real_payload


def _failures(client: TestClient, endpoint: str, reason: str) -> float:
    exposition = client.get("/metrics").text
    labels = {"endpoint": endpoint, "reason": reason}
    return metric_value(exposition, "dingtalk_relay_webhook_auth_failures_total", labels)


@pytest.mark.parametrize(
    ("authorization", "status", "reason"),
    [
        (None, 401, "missing"),
        ("", 401, "missing"),
        ("Bearer", 401, "missing"),
        (f"Basic {WEBHOOK_TOKEN}", 401, "missing"),
        ("Bearer wrong-token-of-some-length", 403, "wrong"),
        (f"Bearer {WEBHOOK_TOKEN[:4]}", 403, "wrong"),  # right first bytes only
        (f"Bearer {WEBHOOK_TOKEN[:-1]}", 403, "wrong"),  # all but the last byte
        (f"Bearer {WEBHOOK_TOKEN}x", 403, "wrong"),  # the token plus more
        (f"Bearer {WEBHOOK_TOKEN.upper()}", 403, "wrong"),
    ],
)
def test_relay_webhooks_refuse_callers_without_the_token(
    standin: DingTalkStandin,
    relay_settings: Callable[..., RelaySettings],
    authorization: str | None,
    status: int,
    reason: str,
):
    headers = {} if authorization is None else {"Authorization": authorization}
    with TestClient(create_app(relay_settings())) as client:
        page = client.post("/alertmanager/default", json=real_payload(), headers=headers)
        unknown_target = client.post("/alertmanager/nobody", json=real_payload(), headers=headers)
        beat = client.post("/heartbeat", json=real_payload(), headers=headers)
        for answer in (page, unknown_target, beat):
            assert answer.status_code == status, answer.text
            body = answer.json()
            assert body["field"] == "authorization"
            assert body["error"] == ("unauthorized" if status == 401 else "forbidden")
            assert WEBHOOK_TOKEN not in answer.text
        assert ("www-authenticate" in page.headers) is (status == 401)
        other = "wrong" if reason == "missing" else "missing"
        assert _failures(client, "alertmanager", reason) == 2 and _failures(client, "heartbeat", reason) == 1
        assert _failures(client, "alertmanager", other) == 0 and _failures(client, "heartbeat", other) == 0
        # The heartbeat was not fed and nothing reached DingTalk.
        assert metric_value(client.get("/metrics").text, "dingtalk_relay_last_heartbeat_timestamp_seconds") == 0
    assert standin.messages == []


def test_relay_webhooks_accept_the_token_case_insensitive_scheme(
    standin: DingTalkStandin, relay_settings: Callable[..., RelaySettings]
):
    with TestClient(create_app(relay_settings())) as client:
        lower_case = {"authorization": f"bearer {WEBHOOK_TOKEN}"}
        sent = client.post("/alertmanager/default", json=real_payload(), headers=lower_case)
        beat = client.post("/heartbeat", json=real_payload(), headers=AUTH)
        assert sent.status_code == 200 and beat.status_code == 200
        assert _failures(client, "alertmanager", "missing") == _failures(client, "alertmanager", "wrong") == 0
        assert metric_value(client.get("/metrics").text, "dingtalk_relay_last_heartbeat_timestamp_seconds") > 0
    assert [m["token"] for m in standin.messages] == [SIGNED_TOKEN]


def test_relay_token_from_file_is_stripped_and_never_logged(
    tmp_path: Path, relay_settings: Callable[..., RelaySettings], caplog: pytest.LogCaptureFixture
):
    token_file = tmp_path / "relay_webhook_token"
    token_file.write_text(f"  {WEBHOOK_TOKEN}\n")
    caplog.set_level(logging.DEBUG)
    with TestClient(create_app(relay_settings(webhook_token=None, webhook_token_file=token_file))) as client:
        assert client.post("/heartbeat", json=real_payload(), headers=AUTH).status_code == 200
        assert client.post("/heartbeat", json=real_payload()).status_code == 401
    assert "webhooks require the bearer token (file)" in caplog.text
    assert WEBHOOK_TOKEN not in caplog.text


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({}, "no webhook token"),
        ({"webhook_token": "short"}, "shorter than 16"),
        ({"webhook_token": "spaces in the token here"}, "without spaces"),
        ({"webhook_token": WEBHOOK_TOKEN, "webhook_token_file": "/nonexistent/token"}, "not both"),
        ({"webhook_token_file": "/nonexistent/token"}, "cannot read RELAY_WEBHOOK_TOKEN_FILE"),
    ],
)
def test_relay_without_a_usable_token_is_closed(overrides: dict[str, object], message: str):
    settings = RelaySettings(_env_file=None, dingtalk_token="t", **overrides)  # type: ignore[call-arg]
    with pytest.raises(WebhookAuthError, match=message):
        load_webhook_auth(settings)
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 503
        for path in ("/alertmanager/default", "/heartbeat"):
            answer = client.post(path, json=real_payload(), headers=AUTH)
            assert answer.status_code == 503 and answer.json()["error"] == "not_configured"
            assert message in answer.json()["message"]


def test_relay_opt_out_opens_the_webhooks_only_when_asked(
    standin: DingTalkStandin, relay_settings: Callable[..., RelaySettings], caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.WARNING)
    with TestClient(create_app(relay_settings(webhook_token=None, allow_unauthenticated_webhooks=True))) as client:
        assert client.post("/alertmanager/default", json=real_payload()).status_code == 200
    assert "anyone who can reach the relay can page on-call" in caplog.text
    assert len(standin.messages) == 1


def test_relay_process_refuses_to_start_without_a_token(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env.update(RELAY_DINGTALK_TOKEN="t", RELAY_PORT="1")  # port 1: it must exit before trying to listen
    refused = subprocess.run([sys.executable, "-m", "dingtalk_relay"], env=env, capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode == 2
    assert "refusing to start: no webhook token" in refused.stderr
    short = subprocess.run([sys.executable, "-m", "dingtalk_relay"], env={**env, "RELAY_WEBHOOK_TOKEN": "tiny-secret"},
                           capture_output=True, text=True, timeout=60)
    assert short.returncode == 2 and "shorter than 16" in short.stderr and "tiny-secret" not in short.stderr
