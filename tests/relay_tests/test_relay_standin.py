"""The DingTalk stand-in itself, checked against signatures computed here by hand.

If the stand-in accepted anything, a broken relay would pass its tests: so every rejection the real
DingTalk makes is proven here, independently of the relay's code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dingtalk_standin.server import DingTalkStandin, Robot

from stack.procs import ManagedProcess, free_port, wait_http

TOKEN, SECRET, KEYWORD = "standin-tok", "SECstandin-secret-42", "告警"
PLAIN = "standin-plain"


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def stand(clock: FakeClock) -> Iterator[DingTalkStandin]:
    s = DingTalkStandin([Robot(TOKEN, SECRET, KEYWORD), Robot(PLAIN)], rate_limit=3, clock=clock)
    s.start()
    yield s
    s.stop()


def hand_sign(secret: str, timestamp_ms: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(mac).decode())


def markdown(text: str = "告警: talker down", title: str = "告警") -> dict[str, Any]:
    at = {"atMobiles": [], "isAtAll": False}
    return {"msgtype": "markdown", "markdown": {"title": title, "text": text}, "at": at}


def send(
    base: str, token: str, body: bytes | dict[str, Any], *, ts: int | None = None, sign: str | None = None
) -> tuple[int, dict[str, Any]]:
    query = f"access_token={urllib.parse.quote(token)}"
    if ts is not None:
        query += f"&timestamp={ts}&sign={sign}"
    data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    request = urllib.request.Request(
        f"{base}/robot/send?{query}", data=data, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def signed(stand: DingTalkStandin, clock: FakeClock, body: bytes | dict[str, Any]) -> tuple[int, dict[str, Any]]:
    ts = int(clock.now * 1000)
    return send(stand.base_url, TOKEN, body, ts=ts, sign=hand_sign(SECRET, ts))


def test_relay_standin_accepts_correctly_signed_message_with_keyword(stand: DingTalkStandin, clock: FakeClock):
    status, answer = signed(stand, clock, markdown())
    assert (status, answer["errcode"]) == (200, 0)
    [message] = stand.messages
    assert message["title"] == "告警" and message["text"] == "告警: talker down" and message["token"] == TOKEN
    with urllib.request.urlopen(f"{stand.base_url}/api/messages", timeout=5) as response:
        assert json.loads(response.read())[0]["msgtype"] == "markdown"


def test_relay_standin_rejects_wrong_signature_and_stale_timestamp(stand: DingTalkStandin, clock: FakeClock):
    ts = int(clock.now * 1000)
    assert send(stand.base_url, TOKEN, markdown(), ts=ts, sign=hand_sign("SECwrong", ts))[1]["errcode"] == 310000
    assert send(stand.base_url, TOKEN, markdown())[1]["errcode"] == 310000  # signed robot, no signature
    stale = ts - 3601 * 1000
    answer = send(stand.base_url, TOKEN, markdown(), ts=stale, sign=hand_sign(SECRET, stale))[1]
    assert answer == {"errcode": 310000, "errmsg": "invalid timestamp"}
    future_ok = ts + 3000 * 1000  # inside the 1 h window either way
    assert send(stand.base_url, TOKEN, markdown(), ts=future_ok, sign=hand_sign(SECRET, future_ok))[1]["errcode"] == 0
    assert len(stand.messages) == 1


def test_relay_standin_rejects_a_signature_that_was_not_url_encoded(stand: DingTalkStandin, clock: FakeClock):
    # A relay that forgets urlencode sends base64's "+" raw; DingTalk reads it as a space and says 310000.
    now_ms = int(clock.now * 1000)
    ts = next(t for t in range(now_ms, now_ms + 1000) if "%2B" in hand_sign(SECRET, t))
    raw = urllib.parse.unquote_plus(hand_sign(SECRET, ts))
    assert send(stand.base_url, TOKEN, markdown(), ts=ts, sign=raw)[1]["errcode"] == 310000
    assert send(stand.base_url, TOKEN, markdown(), ts=ts, sign=hand_sign(SECRET, ts))[1]["errcode"] == 0


def test_relay_standin_rejects_missing_keyword(stand: DingTalkStandin, clock: FakeClock):
    status, answer = signed(stand, clock, markdown(text="talker down", title="talker"))
    assert (status, answer["errcode"]) == (200, 310000)
    assert "keyword" in answer["errmsg"]
    assert stand.messages == []


def test_relay_standin_rejects_oversize_body_by_bytes_not_characters(stand: DingTalkStandin, clock: FakeClock):
    # 6000 Chinese characters: 18000 bytes as UTF-8 but 36000 with \\u escapes.
    text = "告" * 6000
    utf8 = json.dumps(markdown(text=text), ensure_ascii=False).encode()
    escaped = json.dumps(markdown(text=text), ensure_ascii=True).encode()
    assert len(utf8) < 20000 < len(escaped)
    assert signed(stand, clock, utf8)[1]["errcode"] == 0
    assert signed(stand, clock, escaped)[1]["errcode"] == 460101


def test_relay_standin_rate_limit_then_keeps_throttling(stand: DingTalkStandin, clock: FakeClock):
    answers = [send(stand.base_url, PLAIN, markdown())[1]["errcode"] for _ in range(5)]
    assert answers == [0, 0, 0, 130101, 130101]
    clock.now += 61  # the minute has passed, but DingTalk keeps the robot throttled for 10 minutes
    assert send(stand.base_url, PLAIN, markdown())[1]["errcode"] == 130101
    clock.now += 600
    assert send(stand.base_url, PLAIN, markdown())[1]["errcode"] == 0
    assert len(stand.messages) == 4


def test_relay_standin_unknown_token_and_bad_shapes(stand: DingTalkStandin):
    assert send(stand.base_url, "no-such-token", markdown())[1]["errcode"] == 300001
    bad: list[tuple[bytes | dict[str, Any], str]] = [
        (b"{not json", ""),
        ({"msgtype": "image"}, "msgtype"),
        ({"msgtype": "markdown", "markdown": {"title": "t"}}, "markdown.text"),
        ({"msgtype": "markdown", "markdown": {"title": 1, "text": "x"}}, "markdown.title"),
        ({**markdown(), "at": {"atMobiles": "13800000000"}}, "at.atMobiles"),
        ({**markdown(), "at": {"atMobiles": [13800000000]}}, "at.atMobiles"),
        ({**markdown(), "at": {"isAtAll": "yes"}}, "at.isAtAll"),
    ]
    for body, field in bad:
        status, answer = send(stand.base_url, PLAIN, body)
        assert (status, answer["errcode"]) == (200, 40035), body
        assert field in answer["errmsg"], (body, answer)
    assert stand.messages == []
    assert send(stand.base_url, PLAIN, {"msgtype": "text", "text": {"content": "hi"}})[1]["errcode"] == 0


def test_relay_standin_faults_by_count_and_time(stand: DingTalkStandin, clock: FakeClock):
    def fault(spec: dict[str, Any]) -> int:
        request = urllib.request.Request(f"{stand.base_url}/api/faults", data=json.dumps(spec).encode(), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    assert fault({"errcode": 130101, "count": 2}) == 200
    assert [send(stand.base_url, PLAIN, markdown())[1]["errcode"] for _ in range(3)] == [130101, 130101, 0]
    assert fault({"http_status": 503, "count": 1}) == 200
    assert send(stand.base_url, PLAIN, markdown())[0] == 503
    assert fault({"errcode": 310000, "seconds": 30}) == 200
    assert send(stand.base_url, PLAIN, markdown())[1]["errcode"] == 310000
    clock.now += 31
    assert send(stand.base_url, PLAIN, markdown())[1]["errcode"] == 0
    assert fault({"errcode": 130101}) == 422  # neither count nor seconds
    assert fault({"errcode": 130101, "count": 5}) == 200
    delete = urllib.request.Request(f"{stand.base_url}/api/faults", method="DELETE")
    urllib.request.urlopen(delete, timeout=5).close()
    assert send(stand.base_url, PLAIN, markdown())[1]["errcode"] == 0


def test_relay_standin_inbox_page_health_and_clear(stand: DingTalkStandin):
    send(stand.base_url, PLAIN, markdown())
    with urllib.request.urlopen(f"{stand.base_url}/", timeout=5) as response:
        page = response.read().decode()
        assert response.headers["Content-Type"].startswith("text/html")
    assert "api/messages" in page and "setInterval" in page
    with urllib.request.urlopen(f"{stand.base_url}/healthz", timeout=5) as response:
        assert json.loads(response.read()) == {"status": "ok"}
    urllib.request.urlopen(urllib.request.Request(f"{stand.base_url}/api/messages", method="DELETE"), timeout=5)
    assert stand.messages == []


def test_relay_standin_robot_specs():
    assert Robot.parse("t1:s1:告警") == Robot("t1", "s1", "告警")
    assert Robot.parse("t2::") == Robot("t2")
    assert Robot.parse("t3") == Robot("t3")
    with pytest.raises(ValueError):
        Robot.parse(":secret")


def test_relay_standin_runs_as_a_program_with_robots_from_cli_and_env(tmp_path: Path):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "DINGTALK_STANDIN_ROBOTS": "envtok::,envtok2::"}
    argv = [sys.executable, "-m", "dingtalk_standin", "--port", str(port), "--robot", "clitok"]
    with ManagedProcess("standin", argv, log_dir=tmp_path, env=env) as proc:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz", timeout=15, proc=proc)
        assert [send(base, token, markdown())[1]["errcode"] for token in ("clitok", "envtok2", "other")] == [
            0,
            0,
            300001,
        ]
