"""Dead man's switch: a missing Watchdog heartbeat becomes a direct DingTalk message, and so does its return."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
from dingtalk_relay.app import create_app
from dingtalk_relay.heartbeat import HeartbeatMonitor
from dingtalk_relay.metrics import RelayMetrics
from dingtalk_relay.settings import RelaySettings
from dingtalk_standin.server import DingTalkStandin
from fastapi.testclient import TestClient
from relay_tests.relay_helpers import AUTH, InProcessRelay, metric_value, real_payload

from stack.procs import poll_until


def test_relay_heartbeat_timeout_sends_broken_then_restored(
    standin: DingTalkStandin,
    relay_settings: Callable[..., RelaySettings],
    run_relay: Callable[[RelaySettings], InProcessRelay],
):
    # 1.5 s: long enough that a loaded machine does not miss the next step, short enough for a unit test.
    relay = run_relay(relay_settings(heartbeat_timeout="1500ms", heartbeat_check_interval="50ms"))
    gauge = lambda: metric_value(httpx.get(f"{relay.url}/metrics").text, "dingtalk_relay_pipeline_broken")  # noqa: E731
    watchdog = real_payload()
    watchdog["alerts"][0]["labels"] = {"alertname": "Watchdog", "severity": "none"}
    beat = httpx.post(f"{relay.url}/heartbeat", json=watchdog, headers=AUTH)
    assert beat.json() == {"status": "ok", "pipeline_broken": False}
    assert standin.messages == []  # a heartbeat itself is never forwarded

    def titled(word: str) -> Callable[[], list[dict[str, object]]]:
        return lambda: [m for m in standin.messages if word in str(m["title"])]

    broken = poll_until(titled("监控链路中断"), timeout=10, interval=0.05, what="pipeline broken message")
    assert "monitoring pipeline broken" in broken[0]["title"] and "1500" not in broken[0]["title"]
    assert broken[0]["at"]["atMobiles"] == ["13800000000"]  # critical by nature: mention on-call
    assert gauge() == 1

    back = httpx.post(f"{relay.url}/heartbeat", json=watchdog, headers=AUTH)
    assert back.status_code == 200 and gauge() == 0  # cleared by the beat itself, not by the message
    restored = poll_until(titled("监控链路恢复"), timeout=10, interval=0.05, what="pipeline restored message")
    assert len(restored) == 1 and len(broken) == 1


def test_relay_resolved_watchdog_is_not_a_heartbeat(relay_settings: Callable[..., RelaySettings]):
    # With send_resolved on, Alertmanager posts a resolved Watchdog once Prometheus stops sending it:
    # counting that as a sign of life would postpone "pipeline broken" by a whole timeout.
    resolved = real_payload("resolved")
    resolved["alerts"][0]["labels"] = {"alertname": "Watchdog", "severity": "none"}
    last = "dingtalk_relay_last_heartbeat_timestamp_seconds"
    with TestClient(create_app(relay_settings()), headers=AUTH) as client:
        answer = client.post("/heartbeat", json=resolved)
        assert answer.status_code == 200 and answer.json()["status"] == "ignored"
        assert metric_value(client.get("/metrics").text, last) == 0
        assert client.post("/heartbeat", json=real_payload()).json()["status"] == "ok"
        assert metric_value(client.get("/metrics").text, last) > 1.7e9


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_relay_heartbeat_monitor_rules():
    clock = Clock()
    sent: list[bool] = []
    deliver = {"ok": False}

    async def send(broken: bool, _last: float | None) -> bool:
        sent.append(broken)
        return deliver["ok"]

    metrics = RelayMetrics()
    monitor = HeartbeatMonitor(timeout=60, send=send, metrics=metrics, monotonic=clock, wall_clock=clock)

    async def scenario() -> None:
        clock.now += 3600
        await monitor.check()
        assert sent == [] and not monitor.broken  # never armed: a fresh stack is not "broken"
        monitor.beat()
        clock.now += 61
        await monitor.check()  # DingTalk down: the broken notice fails ...
        await monitor.check()  # ... and is tried again on the next tick
        assert sent == [True, True] and monitor.broken
        deliver["ok"] = True
        await monitor.check()
        await monitor.check()
        assert sent == [True, True, True]  # delivered once, not repeated
        monitor.beat()
        await monitor.check()
        assert sent[-1] is False and not monitor.broken
        # Broken again but never told anyone (DingTalk down the whole time): no "restored" afterwards.
        deliver["ok"] = False
        clock.now += 61
        await monitor.check()
        monitor.beat()
        await monitor.check()
        assert sent == [True, True, True, False, True]

    asyncio.run(scenario())
    assert metrics.pipeline_broken._value.get() == 0


def test_relay_heartbeat_no_second_broken_notice_while_restored_was_never_delivered():
    clock = Clock()
    sent: list[bool] = []
    deliver = {"broken": True, "restored": False}

    async def send(broken: bool, _last: float | None) -> bool:
        sent.append(broken)
        return deliver["broken" if broken else "restored"]

    monitor = HeartbeatMonitor(timeout=60, send=send, metrics=RelayMetrics(), monotonic=clock, wall_clock=clock)

    async def scenario() -> None:
        monitor.beat()
        clock.now += 61
        await monitor.check()  # "broken" delivered
        monitor.beat()
        await monitor.check()  # "restored" fails (DingTalk throttled) ...
        clock.now += 61
        await monitor.check()  # ... and it breaks again: the group still reads "broken", nothing new to say
        assert sent == [True, False] and monitor.broken
        deliver["restored"] = True
        monitor.beat()
        await monitor.check()
        await monitor.check()
        assert sent == [True, False, False]  # the owed "restored" once it can be delivered, once

    asyncio.run(scenario())


def test_relay_heartbeat_during_the_broken_notice_still_gets_restored():
    """A beat that arrives while "broken" is still being delivered: once it is delivered, "restored" is owed."""
    clock = Clock()
    sent: list[bool] = []
    monitor: HeartbeatMonitor

    async def send(broken: bool, _last: float | None) -> bool:
        sent.append(broken)
        if broken:
            monitor.beat()  # Alertmanager's Watchdog comes back while DingTalk is answering
            assert not monitor.broken
        return True

    metrics = RelayMetrics()
    monitor = HeartbeatMonitor(timeout=60, send=send, metrics=metrics, monotonic=clock, wall_clock=clock)

    async def scenario() -> None:
        monitor.beat()
        clock.now += 61
        await monitor.check()  # "broken" sent, the beat came in meanwhile
        assert sent == [True] and not monitor.broken and metrics.pipeline_broken._value.get() == 0
        await monitor.check()
        await monitor.check()
        assert sent == [True, False]  # "restored", once

    asyncio.run(scenario())
