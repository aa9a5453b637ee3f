"""Capture REAL Alertmanager 0.25 webhook payloads (firing and resolved) as test fixtures.

    .venv/bin/python tests/relay_tests/capture_payload.py [OUT_DIR]   # default: tests/relay_tests/fixtures

Starts /usr/bin/prometheus-alertmanager on free ports with a webhook receiver pointing at a tiny local HTTP
server, posts an alert through the v2 API, waits for the webhook, then resolves the alert (endsAt = now) and
waits for the resolved notification. The test-suite also calls `capture()` to check the relay still parses
what today's Alertmanager sends.
"""

from __future__ import annotations

import contextlib
import json
import queue
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from stack.procs import ManagedProcess, free_port, wait_http

ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
FIXTURES = Path(__file__).parent / "fixtures"

CONFIG = """
route:
  receiver: relay
  group_by: [alertname, instance]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: relay
    webhook_configs:
      - url: {url}
        send_resolved: true
"""
# How stack/config_render.py makes Alertmanager authenticate to the relay (appended to the webhook above).
BEARER_FROM_FILE = """        http_config:
          authorization:
            credentials_file: {path}
"""

ALERT_LABELS = {
    "alertname": "TalkerHighErrorRate",
    "severity": "critical",
    "service": "talker",
    "instance": "talker:8001",
    "job": "talker",
}
ALERT_ANNOTATIONS = {
    "summary": "talker 5xx 错误率 12.5% 超过 5%",
    "description": "过去 5 分钟 talker:8001 的 HTTP 5xx 比例为 12.5%，阈值 5%。请检查 TTS 引擎与 GPU 状态。",
    "runbook_url": "https://example.com/runbooks/talker#TalkerHighErrorRate",
}


def _webhook_sink(received: queue.Queue[dict[str, Any]]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.put(json.loads(body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def post_alert(api: str, starts_at: datetime, ends_at: datetime | None = None) -> None:
    """Post ALERT_LABELS through Alertmanager's v2 API (resolved when ends_at is in the past)."""
    alert: dict[str, Any] = {
        "labels": ALERT_LABELS,
        "annotations": ALERT_ANNOTATIONS,
        "startsAt": starts_at.isoformat().replace("+00:00", "Z"),
        "generatorURL": "http://prometheus:9090/graph?g0.expr=talker%3Aerror_ratio%3Arate5m+%3E+0.05&g0.tab=1",
    }
    if ends_at is not None:
        alert["endsAt"] = ends_at.isoformat().replace("+00:00", "Z")
    request = urllib.request.Request(
        f"{api}/api/v2/alerts", data=json.dumps([alert]).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200, response.status


def _wait_for(received: queue.Queue[dict[str, Any]], status: str, timeout: float) -> dict[str, Any]:
    deadline = datetime.now(UTC) + timedelta(seconds=timeout)
    while True:
        remaining = (deadline - datetime.now(UTC)).total_seconds()
        if remaining <= 0:
            raise TimeoutError(f"no {status} webhook from Alertmanager within {timeout}s")
        payload = received.get(timeout=remaining)
        if payload.get("status") == status:
            return payload


@contextlib.contextmanager
def running_alertmanager(
    webhook_url: str, workdir: Path, timeout: float = 30.0, *, token_file: Path | None = None
) -> Iterator[str]:
    """A real single-node Alertmanager whose only receiver posts to webhook_url (with the bearer token in
    `token_file`, if given); yields its base URL."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "alertmanager.yml"
    auth = BEARER_FROM_FILE.format(path=json.dumps(str(token_file))) if token_file else ""
    config.write_text(CONFIG.format(url=webhook_url) + auth)
    port = free_port()
    argv = [
        ALERTMANAGER,
        f"--config.file={config}",
        f"--storage.path={workdir}/data",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.external-url=http://alertmanager.example:9093",
        "--cluster.listen-address=",  # single node: no gossip port, no peer wait
    ]
    api = f"http://127.0.0.1:{port}"
    with ManagedProcess("alertmanager", argv, log_dir=workdir) as proc:
        wait_http(f"{api}/-/ready", timeout=timeout, proc=proc)
        yield api


def capture(timeout: float = 30.0) -> tuple[dict[str, Any], dict[str, Any]]:
    """(firing, resolved) payloads as a real Alertmanager sent them."""
    received: queue.Queue[dict[str, Any]] = queue.Queue()
    sink = _webhook_sink(received)
    url = f"http://127.0.0.1:{sink.server_address[1]}/alertmanager/default"
    try:
        with tempfile.TemporaryDirectory(prefix="am-capture-") as tmp, running_alertmanager(url, Path(tmp)) as api:
            starts = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)
            post_alert(api, starts)
            firing = _wait_for(received, "firing", timeout)
            post_alert(api, starts, ends_at=datetime.now(UTC))
            resolved = _wait_for(received, "resolved", timeout)
    finally:
        sink.shutdown()
        sink.server_close()
    return firing, resolved


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else FIXTURES
    out.mkdir(parents=True, exist_ok=True)
    firing, resolved = capture()
    for name, payload in (("alertmanager_firing.json", firing), ("alertmanager_resolved.json", resolved)):
        (out / name).write_text(json.dumps(payload, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {out / name}")


if __name__ == "__main__":
    main()
