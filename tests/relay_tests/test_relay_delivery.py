"""Delivery semantics over real HTTP: retries, permanent errors, DingTalk down, bursts merged under the limit."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from dingtalk_relay.client import DingTalkClient
from dingtalk_relay.delivery import DeliveryPolicy, DeliveryResult, TargetDispatcher
from dingtalk_relay.metrics import RelayMetrics
from dingtalk_relay.models import WebhookPayload
from dingtalk_relay.ratelimit import TokenBucket
from dingtalk_relay.render import AlertView, MessageRenderer
from dingtalk_relay.settings import RelaySettings
from dingtalk_relay.targets import Target
from dingtalk_standin.server import DingTalkStandin, Robot
from pydantic import SecretStr
from relay_tests.relay_helpers import (
    AUTH,
    PLAIN_TOKEN,
    SIGNED_SECRET,
    SIGNED_TOKEN,
    InProcessRelay,
    metric_value,
    payload_with,
    real_payload,
)

from stack.procs import free_port, poll_until

RunRelay = Callable[[RelaySettings], InProcessRelay]


def post(relay: InProcessRelay, body: Any, target: str = "default") -> httpx.Response:
    return httpx.post(f"{relay.url}/alertmanager/{target}", json=body, timeout=30, headers=AUTH)


def metrics(relay: InProcessRelay) -> str:
    return httpx.get(f"{relay.url}/metrics", timeout=10).text


async def post_many(url: str, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60, headers=AUTH) as client:
        return await asyncio.gather(*(client.post(url, json=b) for b in bodies))


def distinct_bodies(count: int) -> list[dict[str, Any]]:
    bodies = []
    for i in range(count):
        body = payload_with(1, name=f"BurstAlert{i:02d}")
        body["alerts"][0]["annotations"]["description"] = "短描述"
        bodies.append(body)
    return bodies


@dataclass
class Dispatch:
    dispatcher: TargetDispatcher
    alerts: list[AlertView]  # real_payload(), rendered
    metrics: RelayMetrics

    async def deliver(self, deadline_s: float) -> DeliveryResult:
        return await self.dispatcher.deliver_alerts(self.alerts, upstream_truncated=0, deadline_s=deadline_s)

    def exposition(self) -> str:
        return self.metrics.exposition().decode()


@contextlib.asynccontextmanager
async def dispatching(dingtalk: Callable[[httpx.Request], Any], policy: DeliveryPolicy) -> AsyncIterator[Dispatch]:
    """A started TargetDispatcher for target "default" whose DingTalk is `dingtalk` (an httpx MockTransport
    handler), 600 messages a minute, with metrics of its own; stopped on the way out."""
    renderer = MessageRenderer(timezone="Asia/Shanghai", max_body_bytes=19000)
    alerts = renderer.views(WebhookPayload.model_validate(real_payload()))
    relay_metrics = RelayMetrics()
    relay_metrics.init_targets(["default"])
    async with httpx.AsyncClient(transport=httpx.MockTransport(dingtalk)) as http:
        dispatcher = TargetDispatcher(Target(name="default", token=SecretStr("t")), DingTalkClient(http), renderer,
                                      TokenBucket(600, 10), relay_metrics, policy)
        dispatcher.start()
        try:
            yield Dispatch(dispatcher, alerts, relay_metrics)
        finally:
            await dispatcher.stop()


def test_relay_dingtalk_down_gives_5xx_within_the_deadline(
    standin: DingTalkStandin, relay_settings: Callable[..., RelaySettings], run_relay: RunRelay
):
    refused = run_relay(relay_settings(dingtalk_api_base=f"http://127.0.0.1:{free_port()}", delivery_deadline=1.0))
    started = time.monotonic()
    answer = post(refused, real_payload())
    assert time.monotonic() - started < 3.0  # the deadline, not Alertmanager's 10 s
    assert answer.status_code == 503 and answer.json()["error"] == "dingtalk_unavailable"
    assert "network error" in answer.json()["message"]
    exposition = metrics(refused)
    assert metric_value(exposition, "dingtalk_relay_notifications_total", {"outcome": "failed"}) == 1
    assert metric_value(exposition, "dingtalk_relay_notifications_total", {"outcome": "retried"}) >= 2

    relay = run_relay(relay_settings(delivery_deadline=1.0))
    standin.set_fault({"http_status": 503, "count": 1000})
    answer = post(relay, real_payload())
    assert answer.status_code == 503 and "HTTP 503" in answer.json()["message"]
    assert standin.messages == []


def test_relay_hanging_dingtalk_gives_503_at_the_deadline_not_after_the_http_timeout(
    relay_settings: Callable[..., RelaySettings], run_relay: RunRelay
):
    # A DingTalk that takes the connection and never answers: the caller must still hear from us before
    # Alertmanager gives up (10 s), even though one HTTP attempt alone may take RELAY_HTTP_TIMEOUT.
    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(16)
        base = f"http://127.0.0.1:{black_hole.getsockname()[1]}"
        relay = run_relay(relay_settings(dingtalk_api_base=base, delivery_deadline=1.5, http_timeout=6.0))
        started = time.monotonic()
        answer = post(relay, real_payload())
        elapsed = time.monotonic() - started
    assert answer.status_code == 503 and answer.json()["error"] == "dingtalk_unavailable"
    assert 1.4 <= elapsed < 4.0, elapsed
    assert metric_value(metrics(relay), "dingtalk_relay_notifications_total", {"outcome": "failed"}) == 1


@pytest.mark.parametrize(
    ("fault", "answered", "errcode_label"),
    [
        ({"errcode": 130101, "count": 3}, {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"},
         "130101"),
        ({"errcode": -1, "count": 3}, {"errcode": -1, "errmsg": "injected fault"}, "-1"),  # "system busy"
        ({"http_status": 429, "count": 3}, {"http_status": 429}, None),  # HTTP-level throttling
    ],
)
def test_relay_retries_what_dingtalk_asks_to_retry_then_succeeds(
    standin: DingTalkStandin,
    relay_settings: Callable[..., RelaySettings],
    run_relay: RunRelay,
    fault: dict[str, int],
    answered: dict[str, Any],
    errcode_label: str | None,
):
    # Retries take rate-limit tokens too; a fast bucket lets four attempts fit in the 3 s test deadline.
    relay = run_relay(relay_settings(rate_limit_per_minute=600))
    standin.set_fault(fault)
    answer = post(relay, real_payload())
    assert answer.status_code == 200, answer.text
    assert len(standin.messages) == 1
    assert standin.answers[:3] == [answered] * 3 and standin.answers[3]["errcode"] == 0
    assert len(standin.answers) == 4
    exposition = metrics(relay)
    if errcode_label is not None:
        assert metric_value(exposition, "dingtalk_relay_api_errors_total", {"errcode": errcode_label}) == 3
    assert metric_value(exposition, "dingtalk_relay_notifications_total", {"outcome": "retried"}) == 3
    assert metric_value(exposition, "dingtalk_relay_notifications_total", {"outcome": "sent"}) == 1
    assert metric_value(exposition, "dingtalk_relay_notifications_total", {"outcome": "failed"}) == 0


@pytest.mark.parametrize("fault", [{"errcode": 40035, "count": 3}, {"http_status": 404, "count": 3}])
def test_relay_does_not_retry_what_a_retry_cannot_fix(
    standin: DingTalkStandin, relay_settings: Callable[..., RelaySettings], run_relay: RunRelay, fault: dict[str, int]
):
    relay = run_relay(relay_settings(rate_limit_per_minute=600))
    standin.set_fault(fault)
    answer = post(relay, real_payload())
    assert answer.status_code == 502 and answer.json()["error"] == "dingtalk_rejected"
    assert len(standin.answers) == 1 and standin.messages == []


@pytest.mark.parametrize(
    ("overrides", "errcode"),
    [({"dingtalk_secret": "SECnot-the-right-one"}, 310000), ({"dingtalk_token": "tok-nobody-knows"}, 300001)],
)
def test_relay_permanent_errcode_is_502_at_once_and_counted(
    standin: DingTalkStandin,
    relay_settings: Callable[..., RelaySettings],
    run_relay: RunRelay,
    overrides: dict[str, str],
    errcode: int,
):
    relay = run_relay(relay_settings(delivery_deadline=20, **overrides))
    answer = post(relay, real_payload())
    assert answer.status_code == 502 and answer.json()["errcode"] == errcode
    assert len(standin.answers) == 1  # no retries for a configuration error
    exposition = metrics(relay)
    assert metric_value(exposition, "dingtalk_relay_api_errors_total", {"errcode": str(errcode)}) == 1
    assert metric_value(exposition, "dingtalk_relay_notifications_total", {"outcome": "failed"}) == 1


def test_relay_burst_of_50_is_merged_and_never_throttled(
    relay_settings: Callable[..., RelaySettings], run_relay: RunRelay, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="dingtalk_relay")
    # DingTalk's 20/min scaled to 20 per 3 s; the relay's bucket scaled the same way (1 + 5/s * 3 s = 16 <= 20).
    with DingTalkStandin([Robot(PLAIN_TOKEN)], rate_limit=20, rate_window=3.0) as fast_dingtalk:
        relay = run_relay(
            relay_settings(
                dingtalk_token=PLAIN_TOKEN,
                dingtalk_secret=None,
                dingtalk_api_base=fast_dingtalk.base_url,
                rate_limit_per_minute=300,
                rate_limit_burst=1,
            )
        )
        answers = asyncio.run(post_many(f"{relay.url}/alertmanager/default", distinct_bodies(50)))
        assert [a.status_code for a in answers] == [200] * 50
        assert all(a["errcode"] == 0 for a in fast_dingtalk.answers)  # never 130101
        texts = "\n".join(m["text"] for m in fast_dingtalk.messages)
        assert all(f"BurstAlert{i:02d}" in texts for i in range(50))  # every alert arrived
        assert len(fast_dingtalk.messages) < 50  # ... merged
        assert metric_value(metrics(relay), "dingtalk_relay_rate_limited_total") > 0
        # One log line per message: which target, how many alerts from how many webhook calls.
        delivered = [m for m in caplog.messages if m.startswith("target default: delivered ")]
        assert len(delivered) == len(fast_dingtalk.messages)
        assert sum(int(m.split()[3]) for m in delivered) == 50


def test_relay_burst_at_default_rate_stays_within_20_messages(
    standin: DingTalkStandin, relay_settings: Callable[..., RelaySettings], run_relay: RunRelay
):
    relay = run_relay(relay_settings(delivery_deadline=8.0, retry_initial_backoff=0.25, retry_max_backoff=2.0))
    answers = asyncio.run(post_many(f"{relay.url}/alertmanager/default", distinct_bodies(50)))
    assert [a.status_code for a in answers] == [200] * 50
    assert 1 < len(standin.messages) <= 20
    assert all(a["errcode"] == 0 for a in standin.answers)
    texts = "\n".join(m["text"] for m in standin.messages)
    assert all(f"BurstAlert{i:02d}" in texts for i in range(50))  # every caller's alert was in a message


def test_relay_never_leaks_secrets_in_logs_or_responses(
    standin: DingTalkStandin,
    relay_settings: Callable[..., RelaySettings],
    run_relay: RunRelay,
    caplog: pytest.LogCaptureFixture,
):
    caplog.set_level(logging.DEBUG)
    ok = run_relay(relay_settings())
    wrong = run_relay(relay_settings(dingtalk_secret="SECwrong-secret-value"))
    down = run_relay(relay_settings(dingtalk_api_base=f"http://127.0.0.1:{free_port()}", delivery_deadline=0.5))
    responses = [
        post(ok, real_payload()),
        post(wrong, real_payload()),
        post(down, real_payload()),
        post(ok, {"version": "4", "alerts": "x"}),
        httpx.get(f"{ok.url}/readyz"),
        httpx.get(f"{ok.url}/metrics"),
    ]
    assert [r.status_code for r in responses] == [200, 502, 503, 422, 200, 200]
    seen = "\n".join(r.text for r in responses) + "\n" + caplog.text
    assert "DingTalk errcode 310000" in seen and "network error" in seen  # the logs did say something
    for secret in (SIGNED_TOKEN, SIGNED_SECRET, "SECwrong-secret-value", "access_token="):
        assert secret not in seen, secret



def test_relay_json_log_line_redacts_secrets_in_tracebacks_too():
    from dingtalk_relay.logs import JsonFormatter, RedactSecrets

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactSecrets([SIGNED_TOKEN]))
    logger = logging.getLogger("relay-test-json-redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise RuntimeError(f"POST https://oapi.dingtalk.com/robot/send?access_token={SIGNED_TOKEN} failed")
        except RuntimeError:
            logger.exception("send to %s failed", SIGNED_TOKEN)
    finally:
        logger.removeHandler(handler)
    [line] = stream.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["level"] == "error" and entry["logger"] == "relay-test-json-redaction"
    assert entry["msg"] == "send to *** failed"
    assert "RuntimeError" in entry["exc"] and "access_token=***" in entry["exc"]
    assert SIGNED_TOKEN not in line

def test_relay_hard_byte_cap_keeps_a_message_dingtalk_would_refuse_deliverable(
    standin: DingTalkStandin, relay_settings: Callable[..., RelaySettings], run_relay: RunRelay, tmp_path: Path
):
    # A site template with a big fixed part: no shortening of alerts can make it fit, only the final cut by
    # bytes. Without that cut DingTalk answers 460101 (over 20000 bytes) and the group is lost for good.
    footer = "值班须知：" + "请先查看 Grafana 仪表盘，再联系负责人。" * 800  # ~50 KB
    alerts = "{% for a in alerts %}- {{ a.name }} {{ a.instance }}\n{% endfor %}"
    (tmp_path / "alerts.md.j2").write_text("#### {{ title }}\n" + alerts + footer + "\n{{ keyword }}")
    relay = run_relay(relay_settings(templates_dir=tmp_path))
    answer = post(relay, payload_with(3))
    assert answer.status_code == 200, answer.text
    [message] = standin.messages
    body = json.dumps({"msgtype": "markdown", "markdown": {"title": message["title"], "text": message["text"]},
                       "at": message["at"]}, ensure_ascii=False, separators=(",", ":")).encode()
    assert 18000 < len(body) <= 19000  # RELAY_MAX_BODY_BYTES (default 19000), and not cut far below it
    assert message["text"].endswith("…(消息过长，已截断)") and "talker-2:8001" in message["text"]
    assert metric_value(metrics(relay), "dingtalk_relay_messages_truncated_total") == 1


def test_relay_dispatcher_stop_cancels_the_send_and_answers_queued_callers_503():
    """Shutdown: the DingTalk request in flight is cancelled; its caller and the callers still queued get 503
    (Alertmanager retries against the next relay process), nothing waits for its deadline."""

    async def scenario() -> tuple[bool, Any, Any, str]:
        in_flight, cancelled = asyncio.Event(), asyncio.Event()

        async def hanging_dingtalk(request: httpx.Request) -> httpx.Response:
            in_flight.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return httpx.Response(200)

        async with dispatching(hanging_dingtalk, DeliveryPolicy(http_timeout=60)) as d:
            first = asyncio.create_task(d.deliver(deadline_s=60))
            await asyncio.wait_for(in_flight.wait(), 10)
            queued = asyncio.create_task(d.deliver(deadline_s=60))
            await asyncio.sleep(0.05)
            await asyncio.wait_for(d.dispatcher.stop(), 5)
            result = await asyncio.wait_for(queued, 5)
            sending = await asyncio.wait_for(first, 5)
            return cancelled.is_set(), sending, result, d.exposition()

    was_cancelled, sending, result, exposition = asyncio.run(scenario())
    assert was_cancelled
    assert (result.ok, result.status_code, result.reason) == (False, 503, "relay shutting down")
    assert (sending.ok, sending.status_code, sending.reason) == (False, 503, "relay shutting down")
    assert metric_value(exposition, "dingtalk_relay_notifications_total", {"outcome": "failed"}) == 2
    assert metric_value(exposition, "dingtalk_relay_notifications_total", {"outcome": "sent"}) == 0


def _dispatch_past_deadline(answers: list[httpx.Response]) -> tuple[Any, Any, list[bytes], str]:
    """Two notifications through a real dispatcher: the first with a 0.1 s deadline whose DingTalk request takes
    0.4 s (its deadline passes while it is in flight), then a second one. DingTalk answers `answers` in turn."""

    calls: list[bytes] = []

    async def scenario() -> tuple[Any, Any, str]:
        async def slow_dingtalk(request: httpx.Request) -> httpx.Response:
            calls.append(request.content)
            if len(calls) == 1:
                await asyncio.sleep(0.4)  # a slow DingTalk, not synchronisation: the test waits on results
            return answers[len(calls) - 1]

        async with dispatching(slow_dingtalk, DeliveryPolicy(http_timeout=5, retry_initial_backoff=0.01)) as d:
            first = await d.deliver(deadline_s=0.1)
            second = await d.deliver(deadline_s=10)
        return first, second, d.exposition()

    first, second, exposition = asyncio.run(scenario())
    return first, second, calls, exposition


def test_relay_caller_whose_deadline_passes_in_flight_gets_dingtalks_answer_not_a_503():
    # Answering 503 while the message was on its way made Alertmanager send the alert again: delivered twice.
    ok = httpx.Response(200, json={"errcode": 0, "errmsg": "ok"})
    first, second, calls, exposition = _dispatch_past_deadline([ok, ok])
    assert (first.ok, first.status_code) == (True, 200)
    assert (second.ok, second.status_code) == (True, 200)
    assert len(calls) == 2  # one message each: the first was not sent again, nor merged into the second
    assert metric_value(exposition, "dingtalk_relay_notifications_total", {"outcome": "sent"}) == 2
    assert metric_value(exposition, "dingtalk_relay_notifications_total", {"outcome": "failed"}) == 0


def test_relay_in_flight_send_that_fails_past_the_deadline_is_answered_503_and_not_retried():
    busy = httpx.Response(200, json={"errcode": -1, "errmsg": "system busy"})  # retryable
    ok = httpx.Response(200, json={"errcode": 0, "errmsg": "ok"})
    first, second, calls, exposition = _dispatch_past_deadline([busy, ok, ok])
    assert (first.ok, first.status_code) == (False, 503) and "system busy" in first.reason
    assert (second.ok, second.status_code) == (True, 200)
    # The second message carries the second notification's alert alone: the first was not queued for a retry.
    assert len(calls) == 2
    # real_payload() holds one alert: merged, the second message would count two.
    assert [json.loads(c)["markdown"]["title"][:8] for c in calls] == ["[告警 1 条]", "[告警 1 条]"]
    assert metric_value(exposition, "dingtalk_relay_notifications_total", {"outcome": "failed"}) == 1


def test_relay_dispatcher_success_result_and_delivery_duration():

    async def scenario() -> tuple[Any, str]:
        async def dingtalk(request: httpx.Request) -> httpx.Response:
            await asyncio.sleep(0.2)
            return httpx.Response(200, json={"errcode": 0, "errmsg": "ok"})

        async with dispatching(dingtalk, DeliveryPolicy()) as d:
            result = await d.deliver(deadline_s=10)
        return result, d.exposition()

    result, exposition = asyncio.run(scenario())
    assert result == DeliveryResult(ok=True, status_code=200, reason="sent", errcode=0)
    seconds = metric_value(exposition, "dingtalk_relay_delivery_duration_seconds_sum", {"target": "default"})
    assert 0.2 <= seconds < 5  # accepted -> errcode 0, the 0.2 s DingTalk took included
    assert metric_value(exposition, "dingtalk_relay_delivery_duration_seconds_count", {"target": "default"}) == 1


def test_relay_caller_that_gave_up_is_not_delivered_later(
    standin: DingTalkStandin, relay_settings: Callable[..., RelaySettings], run_relay: RunRelay
):
    # One message per 2 s, 0.3 s per caller: the second caller's deadline passes while it waits for the bucket.
    relay = run_relay(relay_settings(rate_limit_per_minute=30, rate_limit_burst=1, delivery_deadline=0.3))
    assert post(relay, payload_with(1, name="FirstAlert")).status_code == 200
    gave_up = post(relay, payload_with(1, name="AbandonedAlert"))
    assert gave_up.status_code == 503
    assert gave_up.json()["message"] == "not delivered within 0.3s (waiting for the rate limit)"
    # Alertmanager retries; once the bucket has a token again a retry goes through, alone.
    poll_until(lambda: post(relay, payload_with(1, name="ThirdAlert")).status_code == 200, timeout=15,
               interval=0.01, what="a later webhook delivered")
    assert [m["title"] for m in standin.messages] == ["[告警 1 条] FirstAlert", "[告警 1 条] ThirdAlert"]
    assert "AbandonedAlert" not in standin.messages[1]["text"]


def test_relay_dispatcher_bug_fails_its_batch_with_503_and_keeps_serving(caplog: pytest.LogCaptureFixture):
    """Something below the client raises what nobody expects (here the HTTP transport, not an httpx error): the
    batch's callers get 503 "internal relay error" (Alertmanager retries), counted failed and logged with the
    traceback, and the target's queue lives on: the next notification is delivered."""

    calls: list[bytes] = []

    def dingtalk(request: httpx.Request) -> httpx.Response:
        calls.append(request.content)
        if len(calls) == 1:
            raise RuntimeError("transport bug")
        return httpx.Response(200, json={"errcode": 0, "errmsg": "ok"})

    async def scenario() -> tuple[DeliveryResult, DeliveryResult, str]:
        async with dispatching(dingtalk, DeliveryPolicy()) as d:
            failed = await d.deliver(deadline_s=10)
            sent = await d.deliver(deadline_s=10)
        return failed, sent, d.exposition()

    with caplog.at_level(logging.ERROR, logger="dingtalk_relay"):
        failed, sent, exposition = asyncio.run(scenario())
    assert failed == DeliveryResult(ok=False, status_code=503, reason="internal relay error")
    assert sent == DeliveryResult(ok=True, status_code=200, reason="sent", errcode=0)
    assert len(calls) == 2
    for outcome in ("failed", "sent"):
        assert metric_value(exposition, "dingtalk_relay_notifications_total", {"outcome": outcome}) == 1, outcome
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.getMessage() == "dispatcher for target default failed"
    assert record.exc_info is not None and str(record.exc_info[1]) == "transport bug"
