"""The API key check on /v1 (api.require_api_key) in-process, one header at a time.

test_talker_streams.py proves the same over a real talker process; this file runs the check in the test's own
process so that `make mutation` (which can only see tests that reach the code in their own process) kills its
mutants. Without the lifespan the engines never load: a call that passes the key check is answered 503 by the
next guard (admit), which is how the test tells "let through" from "refused"."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from talker.app import create_app
from talker.settings import Settings

KEYS = ("in-process-key-one-3c9a", "in-process-key-two-81d0")
CALLS = [("GET", "/v1/voices", None), ("POST", "/v1/tts", {"text": "hi"})]


def client_for(settings: Settings) -> TestClient:
    return TestClient(create_app(settings), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def keyed() -> Iterator[TestClient]:
    test_client = client_for(Settings(api_keys=SecretStr(",".join(KEYS)), metrics_port=None, metrics_on_api_port=None))
    yield test_client
    test_client.close()


@pytest.mark.parametrize(
    ("authorization", "status", "error", "detail"),
    [
        (None, 401, "unauthorized", "send Authorization: Bearer <API key> (TALKER_API_KEYS)"),
        ("Bearer", 401, "unauthorized", "send Authorization: Bearer <API key> (TALKER_API_KEYS)"),
        (f"Basic {KEYS[0]}", 401, "unauthorized", "send Authorization: Bearer <API key> (TALKER_API_KEYS)"),
        ("Bearer not-a-key-at-all-0000", 403, "forbidden", "unknown API key"),
        (f"Bearer {KEYS[0][:-1]}", 403, "forbidden", "unknown API key"),
        (f"Bearer {KEYS[0].upper()}", 403, "forbidden", "unknown API key"),
    ],
)
def test_talker_api_keys_refuse_every_header_but_a_key(
    keyed: TestClient, authorization: str | None, status: int, error: str, detail: str
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path, body in CALLS:
        answer = keyed.request(method, path, json=body, headers=headers)
        assert answer.status_code == status, (path, answer.text)
        assert (answer.json()["error"], answer.json()["detail"]) == (error, detail), path
        assert all(key not in answer.text for key in KEYS)
        assert (answer.headers.get("www-authenticate") == "Bearer") is (status == 401), path


@pytest.mark.parametrize("key", KEYS)
def test_talker_api_keys_let_each_configured_key_through(keyed: TestClient, key: str) -> None:
    for method, path, body in CALLS:
        answer = keyed.request(method, path, json=body, headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code not in (401, 403), (path, answer.text)
        assert answer.json()["error"] not in ("unauthorized", "forbidden")


def test_talker_without_api_keys_is_the_open_demo() -> None:
    open_demo = client_for(Settings(metrics_port=None, metrics_on_api_port=None))
    try:
        for method, path, body in CALLS:
            answer = open_demo.request(method, path, json=body)
            assert answer.status_code not in (401, 403), (path, answer.text)
    finally:
        open_demo.close()
