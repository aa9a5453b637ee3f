"""A fleet of boxes, one central store: remote_write rendered by stack.config_render, proven with real Prometheus.

The render tests check what PROMETHEUS_REMOTE_WRITE_* / STACK_BOX turn into (and what they refuse). The
end-to-end tests start a talker, the box's Prometheus 2.42 with the rendered config (fast profile, our
rules) and a central Prometheus with `--web.enable-remote-write-receiver` behind basic auth, then run the
talker dashboards' own queries on both and require the central answers to equal the box's, labelled with
the box's `cluster`/`env`/`box`. The box -> central delay per sample is printed.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import contract
import pytest
import yaml
from monitoring_tests.mon_helpers import run_tool

from devtools.fleet import LocalFleet
from stack.config_render import RenderError, render
from stack.procs import poll_until

EXTERNAL = ("cluster", "env", "box")
BASIC = {"STACK_BOX": "gz-01", "PROMETHEUS_REMOTE_WRITE_URL": "https://metrics.example.com/api/v1/push",
         "PROMETHEUS_REMOTE_WRITE_AUTH": "basic", "PROMETHEUS_REMOTE_WRITE_USERNAME": "gz-01"}


def rendered_prometheus(tmp_path: Path, env: dict[str, str]) -> dict[str, Any]:
    rendered = render(tmp_path / "out", env=env)
    result = run_tool("promtool", "check", "config", "--syntax-only", rendered.prometheus_config)
    assert result.returncode == 0, result.stdout + result.stderr
    return dict(yaml.safe_load(rendered.prometheus_config.read_text(encoding="utf-8")))


def test_fleet_render_without_remote_write_keeps_the_box_to_itself(tmp_path: Path) -> None:
    prom = rendered_prometheus(tmp_path, {})
    assert "remote_write" not in prom
    assert prom["global"]["external_labels"] == {"cluster": "talker", "env": "dev"}


def test_fleet_render_basic_auth_reads_the_password_from_a_file(tmp_path: Path) -> None:
    prom = rendered_prometheus(tmp_path, {**BASIC, "CLUSTER_NAME": "south", "DEPLOY_ENV": "prod"})
    assert prom["global"]["external_labels"] == {"cluster": "south", "env": "prod", "box": "gz-01"}
    assert prom["remote_write"] == [{"name": "central", "url": "https://metrics.example.com/api/v1/push",
                                     "basic_auth": {"username": "gz-01",
                                                    "password_file": "/run/secrets/prometheus_remote_write"}}]


def test_fleet_render_bearer_token_from_a_file(tmp_path: Path) -> None:
    env = {"STACK_BOX": "b2", "PROMETHEUS_REMOTE_WRITE_URL": "http://receive:19291/api/v1/receive",
           "PROMETHEUS_REMOTE_WRITE_AUTH": "Bearer", "PROMETHEUS_REMOTE_WRITE_CREDENTIALS_FILE": "/etc/rw/token"}
    (target,) = rendered_prometheus(tmp_path, env)["remote_write"]
    assert target["authorization"] == {"type": "Bearer", "credentials_file": "/etc/rw/token"}
    assert "basic_auth" not in target


def test_fleet_render_without_auth_sends_no_credentials(tmp_path: Path) -> None:
    env = {"STACK_BOX": "b3", "PROMETHEUS_REMOTE_WRITE_URL": "http://central.lan:9090/api/v1/write"}
    assert rendered_prometheus(tmp_path, env)["remote_write"] == [
        {"name": "central", "url": "http://central.lan:9090/api/v1/write"}]


@pytest.mark.parametrize(("change", "message"), [
    ({"STACK_BOX": ""}, "needs STACK_BOX"),
    ({"STACK_BOX": "gz 01"}, "STACK_BOX must be"),
    ({"PROMETHEUS_REMOTE_WRITE_URL": "https://u:p@metrics.example.com/push"}, "must not carry credentials"),
    ({"PROMETHEUS_REMOTE_WRITE_URL": "ftp://metrics.example.com/push"}, "http\\(s\\) URL"),
    ({"PROMETHEUS_REMOTE_WRITE_URL": 'http://x/"push'}, "http\\(s\\) URL"),
    ({"PROMETHEUS_REMOTE_WRITE_USERNAME": ""}, "goes with PROMETHEUS_REMOTE_WRITE_AUTH=basic"),
    ({"PROMETHEUS_REMOTE_WRITE_AUTH": "bearer"}, "goes with PROMETHEUS_REMOTE_WRITE_AUTH=basic"),
    ({"PROMETHEUS_REMOTE_WRITE_AUTH": "digest"}, "none, basic or bearer"),
    ({"PROMETHEUS_REMOTE_WRITE_CREDENTIALS_FILE": "secrets/rw"}, "absolute path"),
    ({"PROMETHEUS_REMOTE_WRITE_URL": ""}, "URL is empty"),
])
def test_fleet_render_refuses_half_or_unsafe_settings(tmp_path: Path, change: dict[str, str], message: str) -> None:
    with pytest.raises(RenderError, match=message):
        render(tmp_path / "out", env={**BASIC, **change})


# --- real processes ------------------------------------------------------------------------------------------

def talker_dashboard_queries() -> list[contract.Query]:
    """The talker panels' queries (other panels need node-exporter/relay/Alertmanager, which this box lacks)."""
    gpu_only = contract.gpu_only_series()
    out = []
    for query in contract.dashboard_queries():
        names = query.metric_names
        if not names or any(contract.is_gpu_only(n, gpu_only) for n in names) or "ALERTS" in names:
            continue
        if all(n == "up" or n == "process_resident_memory_bytes" or "talker" in n for n in names):
            out.append(contract.Query(query.source, contract.substitute_grafana_variables(query.expr)))
    return out


def label_sets(result: list[dict[str, Any]], strip: tuple[str, ...] = ()) -> set[tuple[tuple[str, str], ...]]:
    return {tuple(sorted((k, v) for k, v in series["metric"].items() if k not in strip)) for series in result}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    with LocalFleet(tmp_path_factory.mktemp("fleet"), cluster="fleet-e2e", box="box-7") as running:
        for text in ("Hello from box seven.", "你好。"):
            assert running.talk("/v1/tts", {"text": text}) == 200, running.logs()
        assert running.talk("/v1/talk", {"text": "Hi."}) == 200, running.logs()
        assert running.talk("/v1/tts", {"txt": "typo"}) == 422
        yield running


@pytest.mark.e2e
def test_fleet_central_store_answers_the_dashboards_queries_for_the_box(fleet: LocalFleet) -> None:
    queries = talker_dashboard_queries()
    assert len(queries) >= 20, [q.source for q in queries]  # the filter above must not hollow the test out

    # The box's external labels arrive with every series (raw and recorded), and nothing else is invented.
    def box_is_up_centrally() -> list[dict[str, Any]]:
        return fleet.query("central", 'up{job="talker"}')

    (up,) = poll_until(box_is_up_centrally, timeout=60, what="talker's up series in the central store")
    assert {k: up["metric"][k] for k in EXTERNAL} == {"cluster": "fleet-e2e", "env": "dev", "box": "box-7"}
    assert up["value"][1] == "1"

    pending = {q.source + " | " + q.expr: q for q in queries}
    answered: dict[str, int] = {}

    def central_matches_box() -> bool:
        for key, query in list(pending.items()):
            box = fleet.query("box", query.expr)
            if not box:
                continue  # nothing to compare yet (e.g. a 30-day budget right after start)
            central = fleet.query("central", query.expr)
            if label_sets(central, EXTERNAL) == label_sets(box):
                answered[key] = len(box)
                del pending[key]
        return len(answered) >= 20 and all(not fleet.query("box", q.expr) for q in pending.values())

    try:
        poll_until(central_matches_box, timeout=90, interval=1.0, what="central answers = box answers")
    except TimeoutError:
        detail = {key: (fleet.query("box", q.expr), fleet.query("central", q.expr)) for key, q in pending.items()}
        pytest.fail(f"central differs from the box for {len(pending)} queries:\n"
                    + json.dumps(detail, ensure_ascii=False, indent=1)[:6000])
    print(f"\n[fleet] {len(answered)} dashboard queries answered centrally as on the box; "
          f"{len(pending)} empty on the box too", flush=True)
    # Recorded series (evaluated on the box) arrive too, with the box's labels.
    slo = fleet.query("central", 'talker:slo_availability:objective{box="box-7",cluster="fleet-e2e"}')
    assert slo and float(slo[0]["value"][1]) > 0.9


@pytest.mark.e2e
def test_fleet_delay_from_box_sample_to_central(fleet: LocalFleet, capsys: pytest.CaptureFixture[str]) -> None:
    delays = fleet.sample_delays('up{job="talker"}', samples=12)
    with capsys.disabled():
        print(f"\n[fleet] delay per sample (talker scraped every 1 s, default remote-write queue):\n{delays.report()}",
              flush=True)
    ordered = sorted(delays.central)
    # Remote write batches for up to batch_send_deadline (5 s); a sample can never arrive before it exists,
    # and one stuck for half a minute means the queue is not draining.
    assert 0 < ordered[0] and ordered[-1] < 30, delays.report()
    assert sorted(delays.box)[len(delays.box) // 2] < ordered[len(ordered) // 2], "central cannot beat the box"


@pytest.mark.e2e
def test_fleet_wrong_password_is_refused_and_counted(tmp_path: Path) -> None:
    with LocalFleet(tmp_path, box="box-bad", password="not-the-password") as bad:

        def failures() -> float:
            return bad.box_metric("prometheus_remote_storage_samples_failed_total", remote_name="central")

        poll_until(failures, timeout=60, what="the box counting refused samples")
        assert bad.query("central", 'up{box="box-bad"}') == []


class _Receiver(http.server.BaseHTTPRequestHandler):
    """Stand-in for a central store behind a token-checking gateway (Mimir / VictoriaMetrics style)."""

    seen: ClassVar[list[dict[str, str]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).seen.append({**{k.lower(): v for k, v in self.headers.items()}, "bytes": str(len(body))})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.e2e
def test_fleet_bearer_token_file_is_sent_as_the_authorization_header(tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/api/v1/receive"
        with LocalFleet(tmp_path, box="box-token", remote_write_url=url, auth="bearer") as box:
            poll_until(lambda: _Receiver.seen, timeout=60, what="a remote-write request at the receiver")
            first = _Receiver.seen[0]
            assert first["authorization"] == f"Bearer {box.bearer_token}"
            assert first["content-encoding"] == "snappy" and first["content-type"] == "application/x-protobuf"
            assert first["x-prometheus-remote-write-version"].startswith("0.1") and int(first["bytes"]) > 0
            # The token lives only in its file: the rendered config names the path.
            assert box.rendered is not None and box.bearer_token not in box.rendered.prometheus_config.read_text()
    finally:
        server.shutdown()
