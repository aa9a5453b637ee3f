"""Helpers shared by the relay tests (import as `relay.relay_helpers`; conftest.py only holds fixtures)."""

from __future__ import annotations

import copy
import json
import threading
from pathlib import Path
from typing import Any

import uvicorn
from dingtalk_relay.app import create_app
from dingtalk_relay.settings import RelaySettings

from stack.procs import free_port, poll_until
from stack.prometheus_text import first_value

FIXTURES = Path(__file__).parent / "fixtures"
SIGNED_TOKEN = "tok-signed-7f3a9c"
SIGNED_SECRET = "SECc0ffee1234567890deadbeefcafe"
KEYWORD = "告警"
PLAIN_TOKEN = "tok-plain-51be02"
WEBHOOK_TOKEN = "relay-webhook-token-for-tests-3f9d2"  # what Alertmanager sends as its bearer token
AUTH = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}


def real_payload(kind: str = "firing") -> dict[str, Any]:
    """A webhook body exactly as Alertmanager 0.25 sent it (captured by capture_payload.py)."""
    return json.loads((FIXTURES / f"alertmanager_{kind}.json").read_text(encoding="utf-8"))


def payload_with(alerts: int, *, name: str = "TalkerHighErrorRate", description: str | None = None) -> dict[str, Any]:
    """The real firing payload with `alerts` distinct alerts (instance talker-{i})."""
    body = real_payload("firing")
    template = body["alerts"][0]
    body["alerts"] = []
    for i in range(alerts):
        alert = copy.deepcopy(template)
        alert["labels"] = {**alert["labels"], "alertname": name, "instance": f"talker-{i}:8001"}
        alert["fingerprint"] = f"{i:016x}"
        if description is not None:
            alert["annotations"]["description"] = description
        body["alerts"].append(alert)
    return body


class InProcessRelay:
    """The relay app under uvicorn in a thread: real HTTP and real concurrency, logs in this process."""

    def __init__(self, settings: RelaySettings) -> None:
        self.app = create_app(settings)
        self.port = free_port()
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_config=None, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="relay-under-test", daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> InProcessRelay:
        self.thread.start()
        poll_until(lambda: self.server.started, timeout=15, interval=0.02, what="in-process relay start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)

    @property
    def runtime(self) -> Any:
        return self.app.state.runtime


def metric_value(exposition: str, name: str, labels: dict[str, str] | None = None) -> float:
    """Value of one sample in a text exposition (0 when absent)."""
    return first_value(exposition, name, **(labels or {}))
