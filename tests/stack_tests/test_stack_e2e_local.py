"""The whole alert path as local processes: real talker, relay, Prometheus, Alertmanager, node-exporter,
SMTP sink and DingTalk stand-in (devtools.devstack, fast profile). One stack for the module; the cases run
in file order and the last one kills talker.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from devtools import loadgen
from devtools.devstack import DevStack
from stack import smoke
from stack.alertpath import (
    DINGTALK_FIRING_MARK,
    Alertmanager,
    DingTalkInbox,
    MailApi,
)
from stack.http_client import get_text, request_json
from stack.procs import poll_until
from stack.prometheus_text import metric_sum

pytestmark = pytest.mark.e2e


def report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    with capsys.disabled():
        print(f"\n[time-to-notify] {line}", flush=True)


def smoke_argv(stack: DevStack) -> list[str]:
    u = stack.urls
    return ["--talker", u["talker"], "--prometheus", u["prometheus"], "--alertmanager", u["alertmanager"],
            "--relay", u["relay"], "--dingtalk", u["dingtalk"], "--mailpit", u["mailpit"],
            f"--admin-token={stack.admin_token}", "--timeout", "120"]  # "=": a token may start with "-"


def test_stack_e2e_watchdog_heartbeat_reaches_relay(dev_stack: DevStack) -> None:
    metrics_url = f"{dev_stack.urls['relay']}/metrics"

    def heartbeat() -> float:
        return metric_sum(get_text(metrics_url), "dingtalk_relay_last_heartbeat_timestamp_seconds")

    last = poll_until(lambda: heartbeat() > 0, timeout=60, what="Watchdog heartbeat at the relay")
    assert last
    assert heartbeat() > time.time() - 120
    assert metric_sum(get_text(metrics_url), "dingtalk_relay_pipeline_broken") == 0


def test_stack_e2e_smoke_synthetic_alert_reaches_dingtalk_and_mail(
    dev_stack: DevStack, capsys: pytest.CaptureFixture[str]
) -> None:
    hops = smoke.synthetic_alert(smoke.parse_args(smoke_argv(dev_stack))[1], timeout=60)
    assert list(hops) == ["Alertmanager has the alert", "DingTalk (stand-in inbox)", "email (Mailpit API)"]
    report(capsys, f"synthetic alert (AM → relay → DingTalk / email): "
                   f"DingTalk {hops['DingTalk (stand-in inbox)']:.1f} s, email {hops['email (Mailpit API)']:.1f} s")


def test_stack_e2e_load_generator_mixes_good_and_bad_requests(dev_stack: DevStack) -> None:
    stats = loadgen.run(dev_stack.urls["talker"], rate=10, duration=2, talk_share=0.2, bad_share=0.3,
                        stream_share=0.3, seed=7, progress=False, timeout=30)
    assert stats.counts["sent"] == 20
    assert stats.counts["ok"] > 0
    assert stats.counts["4xx"] > 0  # the invalid bodies were refused, not served
    assert stats.counts["5xx"] == 0
    assert stats.counts["streamed"] > 0 and len(stats.first_audio) == stats.counts["streamed"]
    exposition = get_text(dev_stack.urls["talker_metrics"])
    assert metric_sum(exposition, "talker_http_requests_total", route="/v1/talk", status="200") > 0
    streamed = metric_sum(exposition, "talker_streams_ended_total", kind="audio", outcome="completed")
    assert streamed == stats.counts["streamed"]  # every streamed speech request of the mix completed


def test_stack_e2e_fault_injection_fires_and_resolves_high_error_rate(
    dev_stack: DevStack, capsys: pytest.CaptureFixture[str]
) -> None:
    ep = smoke.parse_args(smoke_argv(dev_stack))[1]
    hops = smoke.fault_alert(ep, timeout=150)
    fired_dingtalk = hops["DingTalk (stand-in inbox)"]
    fired_mail = hops["email (Mailpit API)"]
    assert hops["Prometheus: TalkerHighErrorRate firing"] <= fired_dingtalk
    assert "email: TalkerHighErrorRate resolved" in hops
    message = DingTalkInbox(dev_stack.urls["dingtalk"]).find(DINGTALK_FIRING_MARK, "TalkerHighErrorRate")
    assert message is not None and "告警" in message["text"]  # the robot keyword is in the text
    report(capsys, f"TalkerHighErrorRate (fast profile): DingTalk {fired_dingtalk:.1f} s, email {fired_mail:.1f} s "
                   f"after fault start; resolved in DingTalk "
                   f"{hops['DingTalk: TalkerHighErrorRate resolved'] - fired_mail:.1f} s after clearing")


def slow_first_tokens(exposition: str) -> float:
    """LLM requests whose first token took more than TalkerLLMSlowFirstToken's 2 s."""
    name = "talker_llm_time_to_first_token_seconds_bucket"
    return metric_sum(exposition, name, le="+Inf") - metric_sum(exposition, name, le="2.0")


def test_stack_e2e_llm_drill_fires_delivers_and_resolves_slow_first_token(
    dev_stack: DevStack, capsys: pytest.CaptureFixture[str]
) -> None:
    """`make smoke FAULT=1`'s LLM drill on real chat turns (talker + the LLM stand-in `make dev` starts)."""
    ep = smoke.parse_args(smoke_argv(dev_stack))[1]
    metrics_url = dev_stack.urls["talker_metrics"]
    before = get_text(metrics_url)
    started = time.monotonic()
    hops = smoke.llm_alert(ep, timeout=150)
    took = time.monotonic() - started
    alert = "TalkerLLMSlowFirstToken"
    # A warning: DingTalk only (alertmanager.yml e-mails critical alerts alone).
    assert list(hops) == ["chat turn answered (no fault yet)", f"Prometheus: {alert} firing", "Alertmanager has it",
                          "DingTalk (stand-in inbox)", f"Prometheus: {alert} resolved", f"DingTalk: {alert} resolved"]
    message = DingTalkInbox(dev_stack.urls["dingtalk"]).find(DINGTALK_FIRING_MARK, alert)
    assert message is not None and "告警" in message["text"] and "LLM 首个 token 延迟" in message["text"]
    after = get_text(metrics_url)
    # Real conversations: few slow turns (one is enough while it is the slowest 5 % of the window), then
    # answered ones until they are under 5 %: 19 per slow one at least, and the drill stops soon after.
    slow = slow_first_tokens(after) - slow_first_tokens(before)
    turns = metric_sum(after, "talker_chat_turns_total", input="text") - metric_sum(
        before, "talker_chat_turns_total", input="text")
    completed = metric_sum(after, "talker_chat_turns_total", input="text", outcome="completed") - metric_sum(
        before, "talker_chat_turns_total", input="text", outcome="completed")
    assert 1 <= slow <= 3, slow
    assert 19 * slow <= completed == turns <= 40 * slow + 10, (slow, completed, turns)
    assert metric_sum(after, "talker_fault_injection_active", kind="llm_extra_latency") == 0  # cleared
    assert 10 < took < 120, took
    report(capsys, f"LLM drill ({alert}, fast profile): fired {hops[f'Prometheus: {alert} firing']:.1f} s, "
                   f"DingTalk {hops['DingTalk (stand-in inbox)']:.1f} s, resolved in DingTalk "
                   f"{hops[f'DingTalk: {alert} resolved']:.1f} s after the start; {slow:g} slow and "
                   f"{completed - slow:g} answered turns; {took:.1f} s in all")


def test_stack_e2e_dingtalk_throttling_delays_but_does_not_lose_an_alert(dev_stack: DevStack) -> None:
    inbox = DingTalkInbox(dev_stack.urls["dingtalk"])
    relay_metrics = f"{dev_stack.urls['relay']}/metrics"
    errors_before = metric_sum(get_text(relay_metrics), "dingtalk_relay_api_errors_total", errcode="130101")
    fault_seconds = 15
    status, _ = request_json("POST", f"{dev_stack.urls['dingtalk']}/api/faults",
                             {"errcode": 130101, "seconds": fault_seconds})
    assert status == 200
    fault_ends = time.monotonic() + fault_seconds

    alert_id = f"throttle-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    Alertmanager(dev_stack.urls["alertmanager"]).post_alerts([{
        "labels": {"alertname": "StackThrottleProbe", "severity": "critical", "instance": "e2e", "probe": alert_id},
        "annotations": {"summary": f"throttle probe {alert_id}"},
        "startsAt": now.isoformat(), "endsAt": (now + timedelta(minutes=5)).isoformat(),
    }])

    # DingTalk answered 130101 (the relay saw it) while the fault lasted ...
    poll_until(lambda: metric_sum(get_text(relay_metrics), "dingtalk_relay_api_errors_total", errcode="130101")
               > errors_before, timeout=fault_seconds, what="relay meeting errcode 130101")
    assert inbox.find(alert_id) is None
    # ... and the alert still arrived once DingTalk accepted messages again (Alertmanager retried).
    poll_until(lambda: inbox.find(alert_id), timeout=120, what=f"{alert_id} in the DingTalk inbox")
    assert time.monotonic() >= fault_ends - 1


def test_stack_e2e_killed_talker_raises_talker_down(
    dev_stack: DevStack, capsys: pytest.CaptureFixture[str]
) -> None:
    inbox = DingTalkInbox(dev_stack.urls["dingtalk"])
    mail = MailApi(dev_stack.urls["mailpit"])
    skip, mail_before = len(inbox.messages()), mail.ids()
    started = time.monotonic()
    dev_stack.procs["talker"].stop()

    poll_until(lambda: inbox.find(DINGTALK_FIRING_MARK, "TalkerDown", skip=skip), timeout=90,
               what="TalkerDown in the DingTalk inbox")
    to_dingtalk = time.monotonic() - started
    poll_until(lambda: mail.find("TalkerDown", exclude=mail_before), timeout=60, what="TalkerDown email")
    to_mail = time.monotonic() - started
    report(capsys, f"TalkerDown (fast profile, for=5s): DingTalk {to_dingtalk:.1f} s, email {to_mail:.1f} s "
                   "after talker was killed")
