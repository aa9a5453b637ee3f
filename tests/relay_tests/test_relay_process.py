"""The relay as a real `python -m dingtalk_relay` process, fed by a real Alertmanager 0.25."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from dingtalk_standin.server import DingTalkStandin
from relay_tests.capture_payload import capture, post_alert, running_alertmanager
from relay_tests.relay_helpers import KEYWORD, SIGNED_SECRET, SIGNED_TOKEN, WEBHOOK_TOKEN, metric_value

from stack.procs import ManagedProcess, free_port, poll_until, wait_http


def test_relay_process_delivers_what_real_alertmanager_sends(standin: DingTalkStandin, tmp_path: Path):
    secret_file = tmp_path / "dingtalk_secret"
    secret_file.write_text(SIGNED_SECRET + "\n")
    token_file = tmp_path / "relay_webhook_token"
    token_file.write_text(WEBHOOK_TOKEN + "\n")
    token_file.chmod(0o600)
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RELAY_")},
        "RELAY_HOST": "127.0.0.1",
        "RELAY_PORT": str(port),
        "RELAY_LOG_LEVEL": "DEBUG",
        "RELAY_DINGTALK_TOKEN": SIGNED_TOKEN,
        "RELAY_DINGTALK_SECRET_FILE": str(secret_file),
        "RELAY_DINGTALK_KEYWORD": KEYWORD,
        "RELAY_DINGTALK_AT_MOBILES": "13800000000",
        "RELAY_DINGTALK_API_BASE": standin.base_url,
        "RELAY_WEBHOOK_TOKEN_FILE": str(token_file),
    }
    relay_url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "dingtalk_relay"]
    with ManagedProcess("dingtalk-relay", argv, log_dir=tmp_path, env=env) as relay:
        wait_http(f"{relay_url}/readyz", timeout=30, proc=relay)
        with running_alertmanager(
            f"{relay_url}/alertmanager/default", tmp_path / "am", token_file=token_file
        ) as alertmanager:
            starts = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
            post_alert(alertmanager, starts)
            [firing] = poll_until(lambda: standin.messages, timeout=30, interval=0.1, what="firing message")
            post_alert(alertmanager, starts, ends_at=datetime.now(UTC))
            poll_until(lambda: len(standin.messages) == 2, timeout=30, interval=0.1, what="resolved message")
        auth = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
        answer = httpx.post(f"{relay_url}/alertmanager/nowhere", json={}, headers=auth)
        anonymous = httpx.post(f"{relay_url}/alertmanager/default", json={})
        exposition = httpx.get(f"{relay_url}/metrics").text
        log_text = relay.log_tail(lines=10_000)
    assert firing["title"] == "[告警 1 条] TalkerHighErrorRate" and "@13800000000" in firing["text"]
    assert standin.messages[1]["title"].startswith("[恢复 1 条] TalkerHighErrorRate")
    assert answer.status_code == 404 and anonymous.status_code == 401
    assert metric_value(exposition, "dingtalk_relay_notifications_total", {"outcome": "sent"}) == 2
    assert "POST /alertmanager/default" in log_text and "delivered 1 alert(s)" in log_text  # real, verbose log ...
    for secret in (SIGNED_TOKEN, SIGNED_SECRET, WEBHOOK_TOKEN, "access_token", "sign="):
        assert secret not in log_text, secret  # ... and still never shows the robot's credentials
    lines = [json.loads(line) for line in log_text.splitlines() if line.strip()]  # JSON lines, as talker's
    assert all({"ts", "level", "logger", "msg"} <= set(line) for line in lines)
    assert {"method": "POST", "path": "/alertmanager/default", "status": 200} in [
        {key: line.get(key) for key in ("method", "path", "status")} for line in lines
    ]
    check = subprocess.run(["/usr/bin/promtool", "check", "metrics"], input=exposition.encode(), capture_output=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_relay_fixtures_match_what_alertmanager_sends_today():
    """The committed fixtures were captured, not invented: a fresh capture has the same shape."""
    from dingtalk_relay.models import WebhookPayload
    from relay_tests.relay_helpers import real_payload

    firing, resolved = capture()
    for fresh, kind in ((firing, "firing"), (resolved, "resolved")):
        stored = real_payload(kind)
        assert set(fresh) == set(stored) and set(fresh["alerts"][0]) == set(stored["alerts"][0])
        assert fresh["version"] == "4" and fresh["status"] == kind
        WebhookPayload.model_validate(fresh)
