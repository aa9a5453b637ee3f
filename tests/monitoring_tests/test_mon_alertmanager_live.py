"""The rendered Alertmanager config in a real Alertmanager 0.25: timings and inhibitions that amtool's static
checks cannot see. The relay is replaced by a recorder of the webhooks Alertmanager sends it."""

from __future__ import annotations

import itertools
import json
import math
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import yaml

from stack.config_render import parse_duration, render
from stack.procs import ManagedProcess, free_port, poll_until, wait_http

pytestmark = pytest.mark.e2e


WEBHOOK_TOKEN = "am-live-webhook-token-5c1e7a"


class WebhookRecorder:
    """Stands in for dingtalk-relay: like the relay, answers 401 without its bearer token; remembers
    (monotonic time, path) of every authorised POST."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, str]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                authorised = self.headers.get("Authorization") == f"Bearer {WEBHOOK_TOKEN}"
                if authorised:
                    recorder.calls.append((time.monotonic(), self.path))
                self.send_response(200 if authorised else 401)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def times(self, path: str) -> list[float]:
        return [when for when, called in list(self.calls) if called == path]


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, WebhookRecorder, dict[str, Any]]]:
    work = tmp_path_factory.mktemp("am-live")
    recorder = WebhookRecorder()
    recorder.thread.start()
    port = free_port()
    token_file = work / "relay_webhook_token"
    token_file.write_text(WEBHOOK_TOKEN + "\n")
    rendered = render(work / "config", profile="fast", env={"RELAY_WEBHOOK_TOKEN_FILE": str(token_file)}, addresses={
        "dingtalk-relay": recorder.address, "alertmanager": f"127.0.0.1:{port}",
        "mailpit": f"127.0.0.1:{free_port()}",  # nothing listens: email is not under test here
    })
    heartbeat = next(r for r in yaml.safe_load(rendered.alertmanager_config.read_text(encoding="utf-8"))["route"]
                     ["routes"] if r["receiver"] == "heartbeat")
    proc = ManagedProcess("alertmanager", [
        "prometheus-alertmanager", f"--config.file={rendered.alertmanager_config}",
        f"--storage.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{port}", *rendered.alertmanager_args,
    ], log_dir=work / "logs")
    try:
        proc.start()
        wait_http(f"http://127.0.0.1:{port}/-/ready", timeout=30, proc=proc)
        yield f"http://127.0.0.1:{port}", recorder, heartbeat
    finally:
        proc.stop()
        recorder.server.shutdown()
        recorder.server.server_close()


def post_alerts(base: str, alerts: list[dict[str, Any]]) -> None:
    now = datetime.now(UTC)
    body = [{**a, "startsAt": now.isoformat(), "endsAt": (now + timedelta(minutes=5)).isoformat()} for a in alerts]
    request = urllib.request.Request(f"{base}/api/v2/alerts", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def test_watchdog_heartbeat_comes_as_often_as_repeat_interval_says(
    alertmanager: tuple[str, WebhookRecorder, dict[str, Any]],
) -> None:
    # Repeats go out only on group_interval ticks, and only when repeat_interval has passed since the
    # previous send completed (just after its tick): a repeat_interval that is a whole number of ticks
    # silently adds one tick to the heartbeat period the docs and the relay's timeout assume.
    base, recorder, heartbeat = alertmanager
    interval = parse_duration(heartbeat["group_interval"])
    expected = math.ceil(parse_duration(heartbeat["repeat_interval"]) / interval) * interval
    post_alerts(base, [{"labels": {"alertname": "Watchdog", "severity": "info", "service": "monitoring"}}])
    poll_until(lambda: len(recorder.times("/heartbeat")) >= 3, timeout=3 * expected + 10,
               what="three heartbeats from Alertmanager")
    sent = recorder.times("/heartbeat")
    gaps = [later - earlier for earlier, later in itertools.pairwise(sent)]
    assert max(gaps[1:]) < expected + interval / 2, f"heartbeat every {gaps} s, expected every {expected} s"


def test_critical_mutes_warning_of_the_same_alert_only_on_the_same_mountpoint(
    alertmanager: tuple[str, WebhookRecorder, dict[str, Any]],
) -> None:
    base = alertmanager[0]
    disk = {"alertname": "HostDiskSpaceLow", "service": "host", "instance": "inhibit-host:9100", "job": "node"}
    post_alerts(base, [
        {"labels": {**disk, "mountpoint": "/data", "severity": "critical"}},
        {"labels": {**disk, "mountpoint": "/data", "severity": "warning"}},
        {"labels": {**disk, "mountpoint": "/", "severity": "warning"}},
    ])

    def inhibited_by() -> dict[tuple[str, str], list[str]] | None:
        with urllib.request.urlopen(f"{base}/api/v2/alerts?filter=instance%3D%22inhibit-host%3A9100%22",
                                    timeout=10) as response:
            listed = json.loads(response.read())
        found = {(a["labels"]["mountpoint"], a["labels"]["severity"]): a["status"]["inhibitedBy"] for a in listed}
        return found if len(found) == 3 and found[("/data", "warning")] else None

    found = poll_until(inhibited_by, timeout=20, what="the /data warning inhibited by the /data critical")
    assert found[("/", "warning")] == [], "a full /data must not hide a filling /"
    assert found[("/data", "critical")] == []


def test_talker_down_mutes_its_own_cluster_only(alertmanager: tuple[str, WebhookRecorder, dict[str, Any]]) -> None:
    # Pod IPs repeat across clusters: a dead pod in one cluster must not hide the same address in another.
    base = alertmanager[0]
    pod = {"service": "talker", "instance": "10.9.0.7:8001", "job": "talker", "namespace": "talker"}
    post_alerts(base, [
        {"labels": {**pod, "cluster": "gpu-a", "alertname": "TalkerDown", "severity": "critical"}},
        {"labels": {**pod, "cluster": "gpu-a", "alertname": "TalkerHighLatency", "severity": "warning"}},
        {"labels": {**pod, "cluster": "gpu-b", "alertname": "TalkerHighLatency", "severity": "warning"}},
    ])

    def inhibited_by() -> dict[tuple[str, str], list[str]] | None:
        with urllib.request.urlopen(f"{base}/api/v2/alerts?filter=instance%3D%2210.9.0.7%3A8001%22",
                                    timeout=10) as response:
            listed = json.loads(response.read())
        found = {(a["labels"]["cluster"], a["labels"]["alertname"]): a["status"]["inhibitedBy"] for a in listed}
        return found if len(found) == 3 and found[("gpu-a", "TalkerHighLatency")] else None

    found = poll_until(inhibited_by, timeout=20, what="TalkerHighLatency of gpu-a inhibited by TalkerDown of gpu-a")
    assert found[("gpu-b", "TalkerHighLatency")] == [], "a TalkerDown in gpu-a must not mute gpu-b"
