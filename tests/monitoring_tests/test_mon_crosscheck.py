"""The cross-check that makes the monitoring real.

Starts the dev stack (devtools.devstack, fast profile: the real talker, dingtalk-relay against the DingTalk
stand-in, node-exporter, Prometheus 2.42 and Alertmanager 0.25 with the rendered configs, the mail sink, the
LLM stand-in), drives a little traffic (a conversation turn on /v1/chat/ws too), then proves that every metric
name a rule or panel uses is in a live scrape and that every recording rule and dashboard query returns data.
A metric renamed in a service fails here, not months later as an empty panel. The LLM drill (injected LLM
errors and latency fire TalkerLLMUpstreamFailing and TalkerLLMSlowFirstToken) runs here too.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import contract
import pytest
from monitoring_tests.mon_helpers import REPO_ROOT, run_tool
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from devtools.devstack import DevStack
from stack.http_client import request
from stack.procs import poll_until
from stack.prometheus_text import metric_sum, sample_names

pytestmark = pytest.mark.e2e


def logs(stack: DevStack) -> str:
    return "\n".join(f"--- {name}\n{proc.log_tail(15)}" for name, proc in stack.procs.items())


def admin_headers(stack: DevStack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.admin_token}"}


# Generous: the cross-check proves names and data, not latency; on a shared 2-core box a short /v1/talk/stream
# once took past 60 s (talker's default deadline: a 504). talker gets REQUEST_TIMEOUT_S, the client a bit more.
REQUEST_TIMEOUT_S = 240


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
         timeout: float = 60.0) -> tuple[int, bytes]:
    reply = request(method, url, body, headers=headers, timeout=timeout)
    return reply.status, reply.body


def talker_http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    return http(method, url, body, headers, timeout=REQUEST_TIMEOUT_S + 30)


def prom_query(stack: DevStack, expr: str) -> list[dict[str, Any]]:
    url = f"{stack.urls['prometheus']}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    status, body = http("GET", url)
    payload = json.loads(body)
    assert status == 200 and payload["status"] == "success", f"{expr}: {payload}"
    return payload["data"]["result"]


def chat_turns(stack: DevStack, texts: list[str]) -> list[dict[str, Any]]:
    """One conversation on /v1/chat/ws (the dev stack's LLM stand-in answers): each turn's turn_end event."""
    url = stack.urls["talker"].replace("http://", "ws://") + "/v1/chat/ws"
    ends: list[dict[str, Any]] = []
    seen: list[str] = []  # the event types so far, for the failure message
    try:
        with ws_connect(url, subprotocols=["talker.chat"], open_timeout=30, max_size=None) as ws:
            ws.send(json.dumps({"type": "config", "output": "audio"}))
            while json.loads(ws.recv(timeout=60)).get("type") != "ready":
                pass
            for text in texts:
                ws.send(json.dumps({"type": "user_text", "text": text}))
                while True:
                    message = ws.recv(timeout=REQUEST_TIMEOUT_S)
                    if isinstance(message, bytes):
                        continue
                    event = json.loads(message)
                    seen.append(str(event.get("type")))
                    if event.get("type") == "turn_end":
                        ends.append(event)
                        break
    except (TimeoutError, OSError, ConnectionClosed) as exc:  # a turn that never ended, or a socket closed on us
        pytest.fail(f"chat turn: {exc!r} after events {seen[-20:]}\n{logs(stack)}")
    return ends


def drive_traffic(stack: DevStack) -> None:
    api, admin = stack.urls["talker"], admin_headers(stack)
    for text in ("你好，值班同学。", "Hello from the cross-check."):
        status, _ = talker_http("POST", f"{api}/v1/tts", {"text": text})
        assert status == 200, logs(stack)
    assert talker_http("POST", f"{api}/v1/talk", {"text": "Hi."})[0] == 200, logs(stack)
    # Streamed speech (OpenAI-compatible) and streamed video: the TTFA / TTFF histograms and stream outcomes.
    speech = {"model": "tts-1", "input": "Streaming check.", "voice": "alloy", "response_format": "wav"}
    status, body = talker_http("POST", f"{api}/v1/audio/speech", speech)
    assert status == 200 and body[:4] == b"RIFF", logs(stack)
    assert talker_http("POST", f"{api}/v1/talk/stream", {"text": "Hi."})[0] == 200, logs(stack)
    assert talker_http("GET", f"{api}/v1/voices")[0] == 200
    assert talker_http("POST", f"{api}/v1/tts", {"txt": "typo"})[0] == 422  # a bad request
    assert talker_http("POST", f"{api}/admin/faults", {"error_rate": 1.0}, admin)[0] == 200
    assert talker_http("POST", f"{api}/v1/tts", {"text": "fail"})[0] == 500  # the injected fault
    assert talker_http("DELETE", f"{api}/admin/faults", None, admin)[0] == 200
    # A real conversation turn: the LLM, chat and stage series carry observations, not only their zeros.
    [end] = chat_turns(stack, ["Hello from the cross-check."])
    assert end["outcome"] == "completed", (end, logs(stack))
    firing = json.loads((REPO_ROOT / "tests/relay_tests/fixtures/alertmanager_firing.json").read_text(encoding="utf-8"))
    webhook_token = stack.webhook_token_file.read_text(encoding="ascii").strip()
    status, body = http("POST", f"{stack.urls['relay']}/alertmanager/default", firing,
                        {"Authorization": f"Bearer {webhook_token}"})
    assert status < 300, body


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    # espeak alone keeps start-up and CPU small on shared cores; the work directory stays for the logs.
    with DevStack(profile="fast", ports="auto", env={"TALKER_ENABLE_PIPER": "false",
                                                    "TALKER_REQUEST_TIMEOUT_S": str(REQUEST_TIMEOUT_S)},
                  workdir=tmp_path_factory.mktemp("crosscheck")) as dev:
        drive_traffic(dev)

        def all_targets_up() -> bool:
            targets = json.loads(http("GET", f"{dev.urls['prometheus']}/api/v1/targets")[1])["data"]["activeTargets"]
            return len(targets) == 5 and all(t["health"] == "up" for t in targets)

        poll_until(all_targets_up, timeout=30, what="every Prometheus target up")
        yield dev


def scrape(url: str) -> str:
    status, body = http("GET", url)
    assert status == 200, url
    return body.decode()


def test_every_referenced_metric_exists_in_a_live_scrape(stack: DevStack) -> None:
    expositions = {
        "talker": scrape(stack.urls["talker_metrics"]),
        "dingtalk-relay": scrape(f"{stack.urls['relay']}/metrics"),
        "node-exporter": scrape(stack.urls["node_exporter"]),
        "alertmanager": scrape(f"{stack.urls['alertmanager']}/metrics"),
        "prometheus": scrape(f"{stack.urls['prometheus']}/metrics"),
    }
    live = {name for text in expositions.values() for name in sample_names(text)}
    recorded, gpu_only = contract.recording_rule_names(), contract.gpu_only_series()
    missing = []
    for query in contract.rule_queries() + contract.dashboard_queries():
        for name in query.metric_names:
            if name in recorded or name in contract.SYNTHETIC_SERIES or contract.is_gpu_only(name, gpu_only):
                continue
            if contract.is_llm_server(name):
                continue  # the llm profile's server, not part of this stack

            if name not in live:
                missing.append(f"{query.source}: {name}")
    assert not missing, "metrics referenced but not exported by any live service:\n" + "\n".join(missing)
    # A CPU box exports the GPU presence flag and none of the GPU-only series: the whitelist is honest.
    assert contract.GPU_PRESENCE_METRIC in live
    assert not (gpu_only & live), f"gpu-only series seen without a GPU: {gpu_only & live}"


@pytest.mark.parametrize("service", ["talker", "dingtalk-relay"])
def test_service_expositions_pass_promtool_check_metrics(stack: DevStack, service: str, tmp_path: Path) -> None:
    url = stack.urls["talker_metrics"] if service == "talker" else f"{stack.urls['relay']}/metrics"
    exposition = tmp_path / "metrics.txt"
    exposition.write_text(scrape(url))
    result = run_tool("sh", "-c", f"promtool check metrics < {exposition}")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_recording_rule_and_dashboard_query_returns_data(stack: DevStack) -> None:
    gpu_only = contract.gpu_only_series()
    queries = [contract.Query(f"recording rule {name}", name) for name in sorted(contract.recording_rule_names())]
    for query in contract.dashboard_queries():
        names = query.metric_names
        if names and all(contract.is_gpu_only(name, gpu_only) for name in names):
            continue  # GPU panels: empty on a CPU box by design (talker_gpu_available says why)
        if names and all(contract.is_llm_server(name) for name in names):
            continue  # the "LLM server" row: empty without the compose profile llm
        queries.append(contract.Query(query.source, contract.substitute_grafana_variables(query.expr)))

    pending = {q.source + " | " + q.expr: q for q in queries}

    def all_have_data() -> bool:
        for key, query in list(pending.items()):
            if prom_query(stack, query.expr):
                del pending[key]
        return not pending

    try:
        poll_until(all_have_data, timeout=60, interval=1.0, what="data for every recording rule and panel")
    except TimeoutError:
        pytest.fail("queries with no data on a working stack:\n" + "\n".join(pending))


def test_watchdog_reaches_the_relay_heartbeat(stack: DevStack) -> None:
    def heartbeat_seen() -> bool:
        text = scrape(f"{stack.urls['relay']}/metrics")
        return metric_sum(text, "dingtalk_relay_last_heartbeat_timestamp_seconds") > 0

    poll_until(heartbeat_seen, timeout=45, what="Watchdog heartbeat at the relay (Prometheus -> Alertmanager -> relay)")
    watchdog = prom_query(stack, 'ALERTS{alertname="Watchdog", alertstate="firing"}')
    assert watchdog and watchdog[0]["metric"]["severity"] == "info"


def test_talker_down_inhibits_other_talker_alerts_of_that_instance(stack: DevStack) -> None:
    labels = {"service": "talker", "instance": "inhibition-check:8001", "job": "talker"}
    alerts = [
        {"labels": {**labels, "alertname": "TalkerDown", "severity": "critical"}},
        {"labels": {**labels, "alertname": "TalkerHighLatency", "severity": "warning"}},
        {"labels": {**labels, "instance": "other:8001", "alertname": "TalkerHighLatency", "severity": "warning"}},
    ]
    assert http("POST", f"{stack.urls['alertmanager']}/api/v2/alerts", alerts)[0] == 200

    def states() -> dict[tuple[str, str], list[str]] | None:
        listed = json.loads(http("GET", f"{stack.urls['alertmanager']}/api/v2/alerts?silenced=false")[1])
        found = {(a["labels"]["alertname"], a["labels"]["instance"]): a["status"]["inhibitedBy"] for a in listed
                 if a["labels"].get("instance") in ("inhibition-check:8001", "other:8001")}
        return found if len(found) == 3 and found[("TalkerHighLatency", "inhibition-check:8001")] else None

    found = poll_until(states, timeout=20, what="Alertmanager to inhibit TalkerHighLatency under TalkerDown")
    assert found[("TalkerDown", "inhibition-check:8001")] == []
    assert found[("TalkerHighLatency", "other:8001")] == []


def test_injected_errors_fire_talker_high_error_rate_within_a_minute(stack: DevStack) -> None:
    """The fast profile promise the e2e tests rely on: 50 % injected 500s -> a firing alert in under a minute."""
    api, admin = stack.urls["talker"], admin_headers(stack)
    assert http("POST", f"{api}/admin/faults", {"error_rate": 0.5}, admin)[0] == 200
    started = time.monotonic()
    try:
        def firing() -> bool:
            http("POST", f"{api}/v1/tts", {"text": "load"})  # keep a few requests per second flowing
            return bool(prom_query(stack, 'ALERTS{alertname="TalkerHighErrorRate", alertstate="firing"}'))

        poll_until(firing, timeout=60, interval=0.1, what="TalkerHighErrorRate firing under 50 % injected errors")
    finally:
        http("DELETE", f"{api}/admin/faults", None, admin)
    assert time.monotonic() - started < 60


def test_a_chat_turn_shows_in_the_conversation_series(stack: DevStack) -> None:
    text = scrape(stack.urls["talker_metrics"])
    assert metric_sum(text, "talker_llm_requests_total", outcome="completed") >= 1
    assert metric_sum(text, "talker_llm_time_to_first_token_seconds_count") >= 1
    assert metric_sum(text, "talker_chat_first_audio_seconds_count") >= 1
    assert metric_sum(text, "talker_stage_duration_seconds_count", stage="llm") >= 1


def test_injected_llm_faults_fire_the_llm_alerts(stack: DevStack) -> None:
    """The LLM drill (issue 11): llm_error_rate -> TalkerLLMUpstreamFailing, llm_extra_latency_ms ->
    TalkerLLMSlowFirstToken, each firing in Prometheus within a minute and a half (fast profile)."""
    api, admin = stack.urls["talker"], admin_headers(stack)

    def drill(fault: dict[str, float], alert: str, outcome: str) -> None:
        assert talker_http("POST", f"{api}/admin/faults", fault, admin)[0] == 200
        started = time.monotonic()
        try:
            def firing() -> bool:
                ends = chat_turns(stack, ["Are you there?"])  # keep LLM requests flowing
                assert ends[0]["outcome"] == outcome, ends
                return bool(prom_query(stack, f'ALERTS{{alertname="{alert}", alertstate="firing"}}'))

            poll_until(firing, timeout=90, interval=0.1, what=f"{alert} firing under {fault}")
        finally:
            talker_http("DELETE", f"{api}/admin/faults", None, admin)
        assert time.monotonic() - started < 90

    drill({"llm_error_rate": 1.0}, "TalkerLLMUpstreamFailing", "llm_error")
    drill({"llm_extra_latency_ms": 2500}, "TalkerLLMSlowFirstToken", "completed")
