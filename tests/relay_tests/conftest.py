"""Fixtures for the relay tests: a DingTalk stand-in, relay settings, and the relay served in-process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from dingtalk_relay.settings import RelaySettings
from dingtalk_standin.server import DingTalkStandin, Robot
from relay_tests.relay_helpers import KEYWORD, PLAIN_TOKEN, SIGNED_SECRET, SIGNED_TOKEN, WEBHOOK_TOKEN, InProcessRelay


@pytest.fixture
def standin() -> Iterator[DingTalkStandin]:
    stand = DingTalkStandin([Robot(SIGNED_TOKEN, SIGNED_SECRET, KEYWORD), Robot(PLAIN_TOKEN)])
    stand.start()
    yield stand
    stand.stop()


@pytest.fixture
def relay_settings(standin: DingTalkStandin) -> Callable[..., RelaySettings]:
    """Settings for target `default` = the signed+keyword robot on the stand-in; override with kwargs."""

    def make(**overrides: Any) -> RelaySettings:
        values: dict[str, Any] = {
            "webhook_token": WEBHOOK_TOKEN,
            "dingtalk_token": SIGNED_TOKEN,
            "dingtalk_secret": SIGNED_SECRET,
            "dingtalk_keyword": KEYWORD,
            "dingtalk_at_mobiles": "13800000000",
            "dingtalk_api_base": standin.base_url,
            "delivery_deadline": 3.0,
            "retry_initial_backoff": 0.05,
            "retry_max_backoff": 0.2,
        }
        values.update(overrides)
        return RelaySettings(_env_file=None, **values)  # type: ignore[call-arg]

    return make


@pytest.fixture
def run_relay() -> Iterator[Callable[[RelaySettings], InProcessRelay]]:
    started: list[InProcessRelay] = []

    def start(settings: RelaySettings) -> InProcessRelay:
        relay = InProcessRelay(settings).__enter__()
        started.append(relay)
        return relay

    yield start
    for relay in started:
        relay.__exit__()
