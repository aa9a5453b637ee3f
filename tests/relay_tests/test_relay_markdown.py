"""Markdown injection: what an alert carries stays text in DingTalk; only our links, only http(s)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from dingtalk_relay.app import create_app
from dingtalk_relay.markdown import md_text, md_url
from dingtalk_relay.settings import RelaySettings
from dingtalk_standin.server import DingTalkStandin
from fastapi.testclient import TestClient
from relay_tests.markdown_check import structure
from relay_tests.relay_helpers import AUTH, real_payload

# The crafted inputs of the review (issue 9, item 4), one per field that reaches the message.
PHISHING_URL = "http://prometheus:9090/graph)\n\n# 紧急：服务器已被入侵\n\n[点此重置密码](https://phish.example/login"
IMAGE_SUMMARY = "磁盘告警 ![logo](https://evil.example/pixel.png) 请立即 [登录处理](https://phish.example/login)"
HEADING_DESCRIPTION = "第一行\n\n# 伪造的标题\n\n<img src=x onerror=alert(1)> <a href='https://phish.example'>点我</a>"
BRACKET_LABEL = "talker:8001](https://phish.example)"


def crafted_payload() -> dict[str, Any]:
    body = real_payload("firing")
    alert = body["alerts"][0]
    alert["generatorURL"] = PHISHING_URL
    alert["labels"] = {**alert["labels"], "alertname": "Disk]Full[x](https://phish.example)", "pod": BRACKET_LABEL,
                       "instance": "host-1 `code` **bold** <b>"}
    alert["annotations"] = {
        "summary": IMAGE_SUMMARY,
        "description": HEADING_DESCRIPTION,
        "runbook_url": "javascript:alert(document.cookie)",
    }
    body["externalURL"] = "http://alertmanager:9093"
    return body


def test_relay_crafted_alert_cannot_inject_headings_links_images_or_html(
    standin: DingTalkStandin, relay_settings: Callable[..., RelaySettings]
):
    with TestClient(create_app(relay_settings()), headers=AUTH) as client:
        answer = client.post("/alertmanager/default", json=crafted_payload())
    assert answer.status_code == 200, answer.text
    [message] = standin.messages
    seen = structure(message["text"])
    assert seen.headings == [message["title"]]  # our title only; no "# 紧急", no "# 伪造的标题"
    assert seen.images == [] and seen.html == []
    assert {text for text, _ in seen.links} == {"Prometheus/Grafana", "静默"}  # javascript: runbook dropped
    assert seen.link_hosts == {"prometheus:9090", "alertmanager:9093"}  # phish.example is no link target
    assert all(href.startswith("http://") for _, href in seen.links)
    # The text is still there for the reader, just inert.
    for words in ("磁盘告警", "登录处理", "伪造的标题", "点我", "Disk", "host-1"):
        assert words in message["text"], words
    assert "\n# " not in message["text"] and "![" not in message["text"]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # Real generator / runbook URLs are left exactly as they are.
        ("http://prometheus:9090/graph?g0.expr=talker%3Aerror_ratio%3Arate5m+%3E+0.05&g0.tab=1",
         "http://prometheus:9090/graph?g0.expr=talker%3Aerror_ratio%3Arate5m+%3E+0.05&g0.tab=1"),
        ("https://ops.example.com/runbooks/talker#TalkerHighErrorRate",
         "https://ops.example.com/runbooks/talker#TalkerHighErrorRate"),
        ("HTTPS://Example.com/a", "https://Example.com/a"),
        ("http://[::1]:9090/graph", "http://[::1]:9090/graph"),
        # What would close the link or start markup is percent-encoded, so it stays inside the one link.
        ("http://x/a)b", "http://x/a%29b"),
        ("http://x/a b\n# h", "http://x/a%20b%0A#%20h"),  # "#" starts the fragment, as in any URL
        ("http://x/?q=[1](http://evil)", "http://x/?q=%5B1%5D%28http://evil%29"),
        ("http://x/<script>\"'`", "http://x/%3Cscript%3E%22%27%60"),
        ("http://x/中文", "http://x/%E4%B8%AD%E6%96%87"),
        # Anything but http(s) with a host is no link at all.
        ("javascript:alert(1)", ""),
        ("data:text/html;base64,PHNjcmlwdD4=", ""),
        ("dingtalk://dingtalkclient/page/link?url=x", ""),
        ("ftp://files.example/x", ""),
        ("//evil.example/x", ""),
        ("/graph?g0.expr=up", ""),
        ("http://", ""),
        ("http://ev il.example/", ""),
        ("http://[::1/", ""),
        ("", ""),
    ],
)
def test_relay_md_url_allows_http_only_and_encodes_what_closes_a_link(url: str, expected: str):
    assert md_url(url) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("CPU 使用率 > 90% (5m)", "CPU 使用率 ＞ 90% (5m)"),
        ("![i](http://e/x.png)", "!［i］(http://e/x.png)"),
        ("a\n\n# b\r\n> c", "a # b ＞ c"),
        ("**x** `y` <b>z</b> \\", "＊＊x＊＊ ｀y｀ ＜b＞z＜/b＞ ＼"),
        ("bidi\u202eevil\u0000end", "bidi evil end"),
        ("node_exporter_up", "node_exporter_up"),
        ("lone\ud800surrogate", "lone surrogate"),
        ("line\u2028para\u2029end\u200bzw", "line para end zw"),
    ],
)
def test_relay_md_text_is_one_inert_line(text: str, expected: str):
    assert md_text(text) == expected
    assert structure(f"- 摘要：{md_text(text)}").links == []


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [("abc", 3, "abc"), ("abcd", 3, "ab…"), ("abcd", 1, "…"), ("abcd", 0, ""), ("a[b", None, "a［b")],
)
def test_relay_md_text_caps_in_characters_including_the_ellipsis(text: str, limit: int | None, expected: str):
    assert md_text(text, limit) == expected


def test_relay_md_url_refuses_a_lone_surrogate_instead_of_failing():
    assert md_url("http://x/a\ud800b") == ""
