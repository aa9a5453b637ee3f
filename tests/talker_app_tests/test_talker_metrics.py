"""The metrics contract, read the way Prometheus reads it: from the live metrics port."""

from __future__ import annotations

import json
import subprocess

import httpx
from fastapi.testclient import TestClient
from talker.app import create_app
from talker.metrics import DURATION_BUCKETS, FIRST_OUTPUT_BUCKETS
from talker.settings import Settings
from talker_app_tests.talker_server import TalkerServer

from stack.procs import poll_until
from stack.prometheus_text import metric_families

EXPECTED = {  # family -> (type, label names)
    "talker_build_info": ("gauge", {"version", "tts_engine", "device"}),
    "talker_http_requests": ("counter", {"method", "route", "status"}),
    "talker_http_request_duration_seconds": ("histogram", {"method", "route"}),
    "talker_http_requests_in_flight": ("gauge", set()),
    "talker_requests_rejected": ("counter", {"reason"}),
    "talker_queue_depth": ("gauge", set()),
    "talker_concurrency_limit": ("gauge", set()),
    "talker_stage_duration_seconds": ("histogram", {"stage"}),
    "talker_audio_seconds": ("counter", {"engine"}),
    "talker_synthesized_characters": ("counter", {"engine"}),
    "talker_video_frames": ("counter", set()),
    "talker_realtime_factor": ("histogram", {"stage"}),
    "talker_active_sessions": ("gauge", set()),
    "talker_ready": ("gauge", set()),
    "talker_model_load_seconds": ("gauge", {"engine"}),
    "talker_fault_injection_active": ("gauge", {"kind"}),
    "talker_gpu_available": ("gauge", set()),
    "talker_time_to_first_audio_seconds": ("histogram", {"route", "engine"}),
    "talker_time_to_first_frame_seconds": ("histogram", {"route"}),
    "talker_streams_active": ("gauge", {"kind"}),
    "talker_streams_ended": ("counter", {"kind", "outcome"}),
    "talker_audio_truncated": ("counter", {"route"}),
    "talker_llm_time_to_first_token_seconds": ("histogram", set()),
    "talker_llm_tokens": ("counter", {"kind"}),
    "talker_llm_requests": ("counter", {"outcome"}),
    "talker_chat_turns": ("counter", {"input", "outcome"}),
    "talker_chat_sessions_active": ("gauge", set()),
    "talker_chat_first_audio_seconds": ("histogram", set()),
}
ROUTES = {"/", "/healthz", "/readyz", "/metrics", "/v1/tts", "/v1/talk", "/v1/voices", "/v1/avatars",
          "/v1/audio/speech", "/v1/talk/stream", "/admin/faults", "/static", "unmatched"}


def make_traffic(talker: TalkerServer) -> None:
    with talker.client() as client:
        assert client.post("/v1/tts", json={"text": "Metrics, please."}).status_code == 200
        assert client.post("/v1/talk", json={"text": "Metrics, please."}).status_code == 200
        speech = {"model": "tts-1", "voice": "alloy", "input": "Metrics, please.", "response_format": "pcm"}
        assert client.post("/v1/audio/speech", json=speech).status_code == 200
        assert client.post("/v1/talk/stream", json={"text": "Metrics, please."}).status_code == 200
        assert client.post("/v1/tts", json={"text": ""}).status_code == 422
        assert client.get("/no/such/path/with/an/id/123").status_code == 404
        client.get("/", headers={"Accept": "text/html"})
        assert client.get("/static/app.js").status_code == 200


def test_talker_metrics_contract_after_traffic(talker: TalkerServer) -> None:
    make_traffic(talker)
    families = metric_families(talker.scrape())
    for name, (kind, labels) in EXPECTED.items():
        assert name in families, f"{name} missing"
        family = families[name]
        assert family.type == kind, name
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            assert set(sample.labels) - {"le"} == labels, (name, sample.labels)

    build = families["talker_build_info"].samples[0]
    assert build.value == 1 and build.labels["device"] == "cpu" and build.labels["tts_engine"] == "espeak"
    # Without NVML the per-GPU series are absent, not zero.
    assert families["talker_gpu_available"].samples[0].value == 0
    assert not any(name.startswith("talker_gpu_memory") for name in families)
    assert "talker_torch_memory_allocated_bytes" not in families
    assert "process_resident_memory_bytes" in families and "python_info" in families

    requests = families["talker_http_requests"].samples
    assert {s.labels["route"] for s in requests} <= ROUTES
    assert any(s.labels["route"] == "unmatched" and s.labels["status"] == "404" for s in requests)
    # The demo page's assets are the /static mount, not "unmatched" (which must mean: no such path).
    assert any(s.labels["route"] == "/static" and s.labels["status"] == "200" for s in requests)
    assert not any(s.labels["route"] == "unmatched" and s.labels["status"].startswith("2") for s in requests)
    buckets = sorted(
        float(s.labels["le"]) for s in families["talker_http_request_duration_seconds"].samples
        if s.name.endswith("_bucket") and s.labels["route"] == "/v1/tts"
    )
    assert buckets[:-1] == list(DURATION_BUCKETS) and buckets[0] == 0.005 and buckets[-2] == 60

    stage_counts = {
        s.labels["stage"]: s.value for s in families["talker_stage_duration_seconds"].samples
        if s.name.endswith("_count")
    }
    assert set(stage_counts) == {"tts", "animate", "encode"}
    assert all(count > 0 for count in stage_counts.values())
    kinds = {s.labels["kind"] for s in families["talker_fault_injection_active"].samples}
    assert kinds == {"error_rate", "extra_latency", "not_ready", "llm_extra_latency", "llm_error_rate"}
    for family, labels in (("talker_time_to_first_audio_seconds", {"route": "/v1/audio/speech", "engine": "espeak"}),
                           ("talker_time_to_first_frame_seconds", {"route": "/v1/talk/stream"})):
        first = sorted(float(s.labels["le"]) for s in families[family].samples
                       if s.name.endswith("_bucket") and labels.items() <= s.labels.items())
        assert first[:-1] == list(FIRST_OUTPUT_BUCKETS) and first[0] == 0.005 and first[-2] == 10, family
        count = next(s.value for s in families[family].samples
                     if s.name.endswith("_count") and labels.items() <= s.labels.items())
        assert count >= 1, family
    assert talker.value("talker_streams_ended_total", kind="audio", outcome="completed") >= 1
    assert talker.value("talker_streams_ended_total", kind="video", outcome="completed") >= 1
    active = {s.labels["kind"]: s.value for s in families["talker_streams_active"].samples}
    assert active == {"audio": 0, "video": 0}  # both kinds exist from the start (no stream runs now)
    ended = {(s.labels["kind"], s.labels["outcome"]) for s in families["talker_streams_ended"].samples
             if s.name.endswith("_total")}
    assert ended == {(kind, outcome) for kind in ("audio", "video")
                     for outcome in ("completed", "client_closed", "slow_reader", "timeout", "error")}
    reasons = {s.labels["reason"] for s in families["talker_requests_rejected"].samples}
    assert reasons == {"overloaded", "timeout", "invalid", "unauthorized"}
    assert talker.value("talker_audio_seconds_total", engine="espeak") > 0
    assert talker.value("talker_video_frames_total") > 0
    assert {"espeak", "piper"} <= {s.labels["engine"] for s in families["talker_model_load_seconds"].samples}


def test_talker_exposition_passes_promtool(talker: TalkerServer) -> None:
    make_traffic(talker)
    result = subprocess.run(
        ["/usr/bin/promtool", "check", "metrics"], input=talker.scrape().encode(), capture_output=True, timeout=30
    )
    assert result.returncode == 0, (result.stdout + result.stderr).decode()


def test_talker_metrics_port_keeps_metrics_off_the_api_port(talker: TalkerServer) -> None:
    assert httpx.get(f"{talker.url}/metrics").status_code == 404
    assert "talker_ready" in talker.scrape()


def test_talker_logs_one_json_line_per_request_without_text(talker: TalkerServer) -> None:
    secret_text = "my private sentence 42"
    response = httpx.post(f"{talker.url}/v1/tts", json={"text": secret_text}, headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"

    def logged() -> dict[str, object] | None:
        for line in talker.proc.log_path.read_text().splitlines():
            if '"abc-123"' in line:
                return json.loads(line)
        return None

    entry = poll_until(logged, timeout=5, what="the access log line")
    assert entry["route"] == "/v1/tts" and entry["method"] == "POST" and entry["status"] == 200
    assert entry["level"] == "info" and entry["ts"] and entry["duration_s"] >= 0
    assert set(entry["stages"]) == {"tts"}  # type: ignore[arg-type]
    assert secret_text not in talker.proc.log_path.read_text()


def test_talker_unexpected_error_is_a_json_500_with_request_id() -> None:
    app = create_app(Settings(admin_token=None))

    def broken() -> None:
        raise RuntimeError("secret internals /etc/passwd")

    app.add_api_route("/broken", broken)  # a real failure inside a real app, observed by its middleware
    client = TestClient(app, raise_server_exceptions=False)  # no lifespan: engines are not needed here
    response = client.get("/broken")
    scrape = client.get("/metrics").text
    assert response.status_code == 500
    body = response.json()
    assert body == {"error": "internal error", "request_id": response.headers["x-request-id"]}
    assert "secret internals" not in response.text
    assert 'talker_http_requests_total{method="GET",route="/broken",status="500"} 1.0' in scrape
