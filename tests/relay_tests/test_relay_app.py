"""The relay's HTTP contract in-process (TestClient), delivering to the DingTalk stand-in."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

from dingtalk_relay.app import create_app
from dingtalk_relay.settings import RelaySettings
from dingtalk_standin.server import DingTalkStandin
from fastapi.testclient import TestClient
from relay_tests.relay_helpers import AUTH, KEYWORD, SIGNED_TOKEN, metric_value, real_payload


def test_relay_delivers_real_alertmanager_payloads(
    standin: DingTalkStandin, relay_settings: Callable[..., RelaySettings]
):
    with TestClient(create_app(relay_settings()), headers=AUTH) as client:
        for kind in ("firing", "resolved"):
            answer = client.post("/alertmanager/default", json=real_payload(kind))
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"status": "sent", "alerts": 1}
        exposition = client.get("/metrics").text
    firing, resolved = standin.messages  # accepted => signature, timestamp, keyword and shape were right
    assert firing["token"] == SIGNED_TOKEN and firing["title"] == "[告警 1 条] TalkerHighErrorRate"
    assert firing["at"] == {"atMobiles": ["13800000000"], "isAtAll": False} and "@13800000000" in firing["text"]
    assert resolved["title"].startswith("[恢复 1 条]") and KEYWORD in resolved["text"]
    assert metric_value(exposition, "dingtalk_relay_alerts_total", {"target": "default", "status": "firing"}) == 1
    assert metric_value(exposition, "dingtalk_relay_alerts_total", {"target": "default", "status": "resolved"}) == 1
    sent = {"target": "default", "outcome": "sent"}
    assert metric_value(exposition, "dingtalk_relay_notifications_total", sent) == 2
    assert metric_value(exposition, "dingtalk_relay_delivery_duration_seconds_count", {"target": "default"}) == 2


def test_relay_rejects_bad_input_with_field_names(
    standin: DingTalkStandin, relay_settings: Callable[..., RelaySettings]
):
    with TestClient(create_app(relay_settings()), headers=AUTH) as client:
        unknown = client.post("/alertmanager/nobody", json=real_payload())
        assert unknown.status_code == 404 and unknown.json()["field"] == "target"
        not_json = client.post("/alertmanager/default", content=b"{oops", headers={"Content-Type": "application/json"})
        assert not_json.status_code == 422 and not_json.json()["fields"][0]["field"] == "body"
        bad_status = real_payload()
        bad_status["alerts"][0]["status"] = "exploding"
        answer = client.post("/alertmanager/default", json=bad_status)
        assert answer.status_code == 422
        assert answer.json()["fields"][0]["field"] == "alerts.0.status"
        assert "exploding" not in answer.text  # input values are not echoed back
        old = client.post("/alertmanager/default", json={**real_payload(), "version": "3"})
        assert old.status_code == 422 and old.json()["fields"][0]["field"] == "version"
        assert client.post("/heartbeat", json={"hello": "world"}).status_code == 422
        assert client.post("/alertmanager/default", json=[1, 2]).status_code == 422
        huge = b'{"pad": "' + b"x" * (9 * 1024 * 1024) + b'"}'
        declared = client.post("/alertmanager/default", content=huge, headers={"Content-Type": "application/json"})
        assert declared.status_code == 413 and declared.json()["field"] == "body"
        # Chunked, no Content-Length: the relay must stop reading at the limit, not buffer everything first.
        chunked = client.post("/heartbeat", content=iter([huge[i : i + 65536] for i in range(0, len(huge), 65536)]))
        assert chunked.status_code == 413 and chunked.json()["field"] == "body"
    assert standin.messages == []


def test_relay_metrics_pass_promtool_and_exist_from_the_start(relay_settings: Callable[..., RelaySettings]):
    with TestClient(create_app(relay_settings()), headers=AUTH) as client:
        assert client.get("/readyz").json() == {"status": "ready", "targets": ["default"]}
        client.post("/heartbeat", json=real_payload())
        answer = client.get("/metrics")
    assert answer.headers["content-type"].startswith("text/plain")
    exposition = answer.text
    check = subprocess.run(
        ["/usr/bin/promtool", "check", "metrics"], input=answer.content, capture_output=True, timeout=30
    )
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
    for line in (
        'dingtalk_relay_notifications_total{outcome="failed",target="default"} 0.0',
        'dingtalk_relay_api_errors_total{errcode="130101",target="default"} 0.0',
        'dingtalk_relay_api_errors_total{errcode="other",target="default"} 0.0',
        'dingtalk_relay_messages_truncated_total{target="default"} 0.0',
        'dingtalk_relay_rate_limited_total{target="default"} 0.0',
        'dingtalk_relay_delivery_duration_seconds_count{target="default"} 0.0',
        "dingtalk_relay_pipeline_broken 0.0",
    ):
        assert line in exposition, line
    assert metric_value(exposition, "dingtalk_relay_last_heartbeat_timestamp_seconds") > 1.7e9
    assert "process_cpu_seconds_total" in exposition and "python_info" in exposition
    assert SIGNED_TOKEN not in exposition
    targets = {line.split('target="')[1].split('"')[0] for line in exposition.splitlines() if 'target="' in line}
    assert targets == {"default"}  # label values come from configuration only
