"""The admin bearer check (api.require_admin) in-process, one header at a time.

test_talker_admin.py proves the same over a real talker process; this file runs the check in the test's own
process so that `make mutation` (which can only mutate code imported here) sees every branch killed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from talker.app import create_app
from talker.settings import Settings

TOKEN = "in-process-admin-token-7d1f"


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    # Without the lifespan (no `with`): the engines never load; /admin/faults does not need them.
    app = create_app(Settings(admin_token=TOKEN, metrics_port=None, metrics_on_api_port=None))
    test_client = TestClient(app, raise_server_exceptions=False)
    yield test_client
    test_client.close()


def rejected(client: TestClient) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith('talker_requests_rejected_total{reason="unauthorized"}'):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.parametrize(
    ("authorization", "status", "error"),
    [
        (None, 401, "unauthorized"),
        ("", 401, "unauthorized"),
        ("Bearer", 401, "unauthorized"),
        ("Bearer    ", 401, "unauthorized"),
        (f"Basic {TOKEN}", 401, "unauthorized"),
        (f"Token {TOKEN}", 401, "unauthorized"),
        ("Bearer wrong-token", 403, "forbidden"),
        (f"Bearer {TOKEN[:4]}", 403, "forbidden"),  # the first bytes only
        (f"Bearer {TOKEN[:-1]}", 403, "forbidden"),  # all but the last byte
        (f"Bearer {TOKEN}x", 403, "forbidden"),  # the token and more
        (f"Bearer {TOKEN.upper()}", 403, "forbidden"),
    ],
)
def test_talker_admin_refuses_every_header_but_the_token(
    client: TestClient, authorization: str | None, status: int, error: str
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    before = rejected(client)
    for method in ("GET", "POST", "DELETE"):
        answer = client.request(method, "/admin/faults", headers=headers, json={"error_rate": 1})
        assert answer.status_code == status, (method, answer.text)
        assert answer.json()["error"] == error
        assert TOKEN not in answer.text
        if status == 401:
            assert answer.headers["WWW-Authenticate"] == "Bearer"
            assert answer.json()["detail"] == "send Authorization: Bearer <TALKER_ADMIN_TOKEN>"
        else:
            assert "www-authenticate" not in answer.headers
            assert answer.json()["detail"] == "wrong admin token"
    assert rejected(client) == before + 3
    assert client.get("/admin/faults", headers={"Authorization": f"Bearer {TOKEN}"}).json()["active"] == {
        "error_rate": False, "extra_latency": False, "not_ready": False, "llm_extra_latency": False,
        "llm_error_rate": False,
    }


@pytest.mark.parametrize("authorization", [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"BEARER  {TOKEN} "])
def test_talker_admin_accepts_the_token(client: TestClient, authorization: str) -> None:
    before = rejected(client)
    answer = client.get("/admin/faults", headers={"Authorization": authorization})
    assert answer.status_code == 200, answer.text
    assert set(answer.json()["active"]) == {"error_rate", "extra_latency", "not_ready", "llm_extra_latency",
                                            "llm_error_rate"}
    assert rejected(client) == before
