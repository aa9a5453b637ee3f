"""Poison-proof delivery: nothing an alert carries makes the relay fail for its group.

The fuzz test generates Alertmanager webhook payloads (any text in labels and annotations, times from year 1
to 9999 with any UTC offset, hostile URLs) and posts them to the real relay app in front of the DingTalk
stand-in: every answer must be 200 (the stand-in never fails here, so no 5xx is excusable), and every alert
of the payload must be in the message DingTalk received, with no heading, image, HTML or foreign link.
Deterministic (derandomize, no example database) and bounded (MAX_EXAMPLES, a few seconds).
"""

from __future__ import annotations

import os
import string
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from dingtalk_relay.app import create_app
from dingtalk_relay.settings import RelaySettings
from dingtalk_standin.server import DingTalkStandin, Robot
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from relay_tests.markdown_check import OUR_LINK_TEXTS, structure
from relay_tests.relay_helpers import AUTH, KEYWORD, PLAIN_TOKEN, metric_value, real_payload

MAX_EXAMPLES = int(os.environ.get("RELAY_FUZZ_EXAMPLES", "60"))  # `make mutation` runs it with fewer
HOSTILE_URLS = [
    "http://prometheus:9090/graph)\n\n# 标题\n\n[钓鱼](https://phish.example)",
    "javascript:alert(1)",
    "http://[::1",
    "https://ops.example.com/runbook#x",
    "http://x/" + "长" * 400,
    "",
]

# Any text a Go string can hold (no surrogates), newlines and markdown characters included.
any_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=120)
markdown_text = st.lists(st.sampled_from([*"[]()!#<>*`\\_\n |-:", "http://e.x/", "中", "a"]), max_size=30).map("".join)
label_names = st.text(string.ascii_letters + string.digits + "_", min_size=1, max_size=12).filter(
    lambda n: n[0].isalpha() and n not in ("instance",)
)
offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
times = st.one_of(
    st.just("0001-01-01T00:00:00Z"),
    st.just("9999-12-31T23:59:59-14:00"),
    st.just("0001-01-01T00:00:00+14:00"),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=offsets).map(
        lambda d: d.isoformat()
    ),
)
urls = st.one_of(st.sampled_from(HOSTILE_URLS), any_text, markdown_text)


@st.composite
def alert(draw: st.DrawFn, marker: str) -> dict[str, Any]:
    labels = draw(st.dictionaries(label_names, st.one_of(any_text, markdown_text), max_size=5))
    labels["alertname"] = draw(st.one_of(any_text, markdown_text, st.just("")))
    if draw(st.booleans()):
        labels["severity"] = draw(st.one_of(st.sampled_from(["critical", "warning", "info"]), any_text))
    labels["instance"] = marker  # how the test finds each alert in the message
    annotations = draw(st.dictionaries(st.sampled_from(["summary", "description", "runbook_url", "x"]),
                                       st.one_of(any_text, markdown_text, urls), max_size=4))
    return {
        "status": draw(st.sampled_from(["firing", "resolved"])),
        "labels": labels,
        "annotations": annotations,
        "startsAt": draw(times),
        "endsAt": draw(times),
        "generatorURL": draw(urls),
        "fingerprint": draw(st.text(string.hexdigits, max_size=16)),
    }


@st.composite
def webhook_payload(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(1, 4))
    body = real_payload("firing")
    body["alerts"] = [draw(alert(f"fuzz-{i}")) for i in range(count)]
    body["status"] = "firing" if any(a["status"] == "firing" for a in body["alerts"]) else "resolved"
    body["externalURL"] = draw(urls)
    body["truncatedAlerts"] = draw(st.integers(0, 3))
    return body


def test_relay_fuzzed_payloads_are_all_delivered_and_stay_inert(relay_settings: Callable[..., RelaySettings]):
    # DingTalk's 20 messages/min would turn this test into one about throttling: lift it on both sides.
    with DingTalkStandin([Robot(PLAIN_TOKEN)], rate_limit=100_000) as dingtalk:
        app = create_app(relay_settings(dingtalk_token=PLAIN_TOKEN, dingtalk_secret=None, dingtalk_keyword=None,
                                        dingtalk_api_base=dingtalk.base_url, rate_limit_per_minute=100_000,
                                        rate_limit_burst=1000))
        with TestClient(app, headers=AUTH) as client:

            @settings(max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
            @given(webhook_payload())
            def check(payload: dict[str, Any]) -> None:
                dingtalk.clear()
                answer = client.post("/alertmanager/default", json=payload)
                assert answer.status_code == 200, answer.text
                [message] = dingtalk.messages
                for i in range(len(payload["alerts"])):
                    assert f"实例：fuzz-{i}\n" in message["text"], f"alert {i} missing"
                seen = structure(message["text"])
                assert seen.headings == [message["title"]] and seen.images == [] and seen.html == []
                assert all(text in OUR_LINK_TEXTS for text, _ in seen.links), seen.links
                assert all(href.startswith(("http://", "https://")) for _, href in seen.links), seen.links
                assert len(seen.links) <= 3 * len(payload["alerts"])

            check()


def test_relay_unrenderable_time_does_not_block_the_group(
    standin: DingTalkStandin, relay_settings: Callable[..., RelaySettings]
):
    """The review's reproduction: one alert whose startsAt cannot be shown in the relay's timezone."""
    body = real_payload("firing")
    good = body["alerts"][0]
    poison = {**good, "labels": {**good["labels"], "instance": "poison:1"}, "startsAt": "9999-12-31T23:59:59-14:00"}
    body["alerts"] = [good, poison, {**good, "labels": {**good["labels"], "instance": "after:1"}}]
    with TestClient(create_app(relay_settings()), headers=AUTH) as client:
        answer = client.post("/alertmanager/default", json=body)
    assert answer.status_code == 200 and answer.json() == {"status": "sent", "alerts": 3}
    [message] = standin.messages
    for instance in ("talker:8001", "poison:1", "after:1"):
        assert f"实例：{instance}" in message["text"]
    assert "- 开始：-\n" in message["text"]  # the one field that could not be rendered


def test_relay_broken_site_template_still_delivers_a_plain_message(
    standin: DingTalkStandin, relay_settings: Callable[..., RelaySettings], tmp_path: Path
):
    # A site template that renders fine at start-up checks but fails on real data (StrictUndefined).
    (tmp_path / "alerts.md.j2").write_text("{% for a in alerts %}{{ a.no_such_field }}{% endfor %}")
    body = real_payload("firing")
    good = body["alerts"][0]
    body["alerts"] = [good, {**good, "status": "resolved", "labels": {**good["labels"], "instance": "b:1"}}]
    with TestClient(create_app(relay_settings(templates_dir=tmp_path)), headers=AUTH) as client:
        answer = client.post("/alertmanager/default", json=body)
        exposition = client.get("/metrics").text
    assert answer.status_code == 200, answer.text  # not 503: a retry would fail the same way, forever
    [message] = standin.messages
    assert message["title"] == "[告警 1 条 / 恢复 1 条] TalkerHighErrorRate"  # the keyword 告警 is in it already
    assert message["text"] == (
        f"#### {message['title']}\n\n共 2 条告警，消息内容无法生成，请在 Alertmanager 查看详情。\n\n"
        f"> {KEYWORD}\n\n@13800000000"
    )
    assert message["at"] == {"atMobiles": ["13800000000"], "isAtAll": False}  # a critical one is firing
    assert metric_value(exposition, "dingtalk_relay_messages_truncated_total", {"target": "default"}) == 1


def test_relay_fallback_message_mentions_only_for_configured_severities(
    standin: DingTalkStandin, relay_settings: Callable[..., RelaySettings], tmp_path: Path
):
    (tmp_path / "alerts.md.j2").write_text("{{ alerts[0].no_such_field }}")
    body = real_payload("firing")
    body["alerts"][0]["labels"]["severity"] = "warning"
    settings_ = relay_settings(templates_dir=tmp_path, dingtalk_at_all=True)
    with TestClient(create_app(settings_), headers=AUTH) as client:
        assert client.post("/alertmanager/default", json=body).status_code == 200
    [message] = standin.messages
    assert message["at"] == {"atMobiles": [], "isAtAll": False} and "@" not in message["text"]
    assert message["text"].endswith(f"> {KEYWORD}\n")
