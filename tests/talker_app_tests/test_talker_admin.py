"""Fault injection: who may switch it, and what users and Prometheus see while it is on."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from talker.app import create_app
from talker.settings import Settings
from talker_app_tests.talker_server import ADMIN_TOKEN, TalkerServer, admin_headers


@pytest.fixture(scope="module")
def unloaded_app() -> Iterator[TestClient]:
    """The app with no admin token and default metrics settings. Used without its lifespan, so the
    engines never start loading: exactly what a client sees in the seconds after startup."""
    app = create_app(Settings(admin_token=None, metrics_port=None, metrics_on_api_port=None))
    client = TestClient(app, raise_server_exceptions=False)
    yield client
    client.close()


def test_talker_admin_is_404_without_token(unloaded_app: TestClient) -> None:
    for method in ("POST", "DELETE", "GET"):
        response = unloaded_app.request(method, "/admin/faults", headers=admin_headers(), json={})
        assert response.status_code == 404, method
        assert response.json() == {"error": "not found"}


def test_talker_metrics_on_api_port_by_default_without_metrics_port(unloaded_app: TestClient) -> None:
    response = unloaded_app.get("/metrics")
    assert response.status_code == 200
    assert "talker_build_info" in response.text


def test_talker_admin_auth(faults: TalkerServer) -> None:
    talker = faults
    url = f"{talker.url}/admin/faults"
    before = talker.value("talker_requests_rejected_total", reason="unauthorized")

    missing = httpx.post(url, json={"error_rate": 1})
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    wrong = httpx.post(url, json={"error_rate": 1}, headers=admin_headers("not-the-token"))
    assert wrong.status_code == 403
    not_bearer = httpx.post(url, json={"error_rate": 1}, headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert not_bearer.status_code == 401

    assert talker.value("talker_requests_rejected_total", reason="unauthorized") == before + 3
    assert talker.value("talker_fault_injection_active", kind="error_rate") == 0  # nothing was switched on

    ok = httpx.post(url, json={"extra_latency_ms": 5}, headers=admin_headers())
    assert ok.status_code == 200
    assert ok.json()["active"] == {"error_rate": False, "extra_latency": True, "not_ready": False,
                                   "llm_extra_latency": False, "llm_error_rate": False}

    bad = httpx.post(url, json={"error_rate": 1.5}, headers=admin_headers())
    assert bad.status_code == 422
    assert bad.json()["field"] == "error_rate"


def test_talker_error_rate_fault_shows_as_500s(faults: TalkerServer) -> None:
    talker = faults
    key = {"method": "POST", "route": "/v1/tts", "status": "500"}
    before = talker.value("talker_http_requests_total", **key)
    talker.set_faults(error_rate=1.0)
    assert talker.value("talker_fault_injection_active", kind="error_rate") == 1
    for _ in range(3):
        response = httpx.post(f"{talker.url}/v1/tts", json={"text": "hello"}, timeout=10)
        assert response.status_code == 500
        assert response.json()["error"] == "injected fault"
    assert talker.value("talker_http_requests_total", **key) == before + 3

    talker.clear_faults_and_drain()
    assert httpx.post(f"{talker.url}/v1/tts", json={"text": "hello"}, timeout=10).status_code == 200
    assert talker.value("talker_fault_injection_active", kind="error_rate") == 0


def test_talker_llm_faults_are_switched_and_shown_like_the_others(faults: TalkerServer) -> None:
    talker = faults
    url = f"{talker.url}/admin/faults"
    for field, value in (("llm_error_rate", 1.01), ("llm_extra_latency_ms", -1)):
        bad = httpx.post(url, json={field: value}, headers=admin_headers())
        assert bad.status_code == 422 and bad.json()["field"] == field
    talker.set_faults(llm_extra_latency_ms=1500, llm_error_rate=0.25)
    state = httpx.get(url, headers=admin_headers()).json()
    assert state["faults"]["llm_extra_latency_ms"] == 1500 and state["faults"]["llm_error_rate"] == 0.25
    assert state["active"]["llm_extra_latency"] is True and state["active"]["llm_error_rate"] is True
    assert talker.value("talker_fault_injection_active", kind="llm_extra_latency") == 1
    assert talker.value("talker_fault_injection_active", kind="llm_error_rate") == 1
    assert talker.value("talker_fault_injection_active", kind="error_rate") == 0
    # The synthesis routes are untouched by the LLM's faults.
    assert httpx.post(f"{talker.url}/v1/tts", json={"text": "hello"}, timeout=10).status_code == 200

    talker.clear_faults_and_drain()
    assert talker.value("talker_fault_injection_active", kind="llm_extra_latency") == 0
    assert talker.value("talker_fault_injection_active", kind="llm_error_rate") == 0


def test_talker_not_ready_fault(faults: TalkerServer) -> None:
    talker = faults
    talker.set_faults(not_ready=True)
    ready = httpx.get(f"{talker.url}/readyz")
    assert ready.status_code == 503
    assert ready.json()["ready"] is False
    assert talker.value("talker_ready") == 0
    assert talker.value("talker_fault_injection_active", kind="not_ready") == 1
    assert httpx.get(f"{talker.url}/healthz").status_code == 200  # alive, just not taking traffic

    talker.clear_faults_and_drain()
    assert httpx.get(f"{talker.url}/readyz").status_code == 200
    assert talker.value("talker_ready") == 1


def test_talker_requests_before_engines_are_loaded_get_503(unloaded_app: TestClient) -> None:
    assert unloaded_app.get("/healthz").status_code == 200
    ready = unloaded_app.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["status"] == "loading"
    early = unloaded_app.post("/v1/tts", json={"text": "too early"})
    assert early.status_code == 503
    assert early.json()["error"] == "not ready"
    assert early.headers["Retry-After"]
    assert "talker_ready 0.0" in unloaded_app.get("/metrics").text


@pytest.mark.parametrize(
    "token",
    [
        ADMIN_TOKEN[:-1] + chr(ord(ADMIN_TOKEN[-1]) ^ 1),  # same length, only the last byte differs
        ADMIN_TOKEN[:4] + "-" * (len(ADMIN_TOKEN) - 4),  # the first 4 bytes right, the rest wrong
        ADMIN_TOKEN[:-1],  # a prefix one byte short
        ADMIN_TOKEN[:4],  # a short prefix
        ADMIN_TOKEN + "x",  # the token with a byte more
        ADMIN_TOKEN.upper(),
    ],
    ids=["last-byte", "first-4-bytes", "prefix-1", "prefix-4", "suffix", "upper-case"],
)
def test_talker_admin_token_must_match_in_full(faults: TalkerServer, token: str) -> None:
    # Only the whole token, byte for byte, opens /admin: near misses are refused like a wholly wrong one.
    assert token != ADMIN_TOKEN
    response = httpx.get(f"{faults.url}/admin/faults", headers=admin_headers(token), timeout=10)
    assert response.status_code == 403, response.text
    assert response.json()["error"] == "forbidden"
    assert httpx.get(f"{faults.url}/admin/faults", headers=admin_headers(), timeout=10).status_code == 200
