"""Our own clients and talker's API keys: `make smoke`'s traffic and `make load` send the configured bearer key
(stack/api_key.py) and succeed; without it the same requests are 401 and counted as `unauthorized`."""

from __future__ import annotations

from pathlib import Path

import pytest
from talker_app_tests.talker_server import API_KEY, FILE_API_KEY, TalkerServer

from devtools import loadgen
from stack import smoke
from stack.api_key import ClientKey, client_key
from stack.procs import poll_until


def unauthorized(talker: TalkerServer) -> float:
    return talker.value("talker_requests_rejected_total", reason="unauthorized")


def test_client_key_comes_from_the_first_place_that_holds_one(tmp_path: Path) -> None:
    keys = tmp_path / "talker_api_keys"
    keys.write_text("\n first-of-file , second\n")
    empty = tmp_path / "empty"
    empty.write_text("")
    assert client_key({}, default_file=None) == ClientKey("", "")
    assert client_key({}, default_file=empty).value == ""  # the open demo's empty secret: no header
    assert client_key({}, default_file=tmp_path / "missing").value == ""
    assert client_key({}, default_file=keys) == ClientKey("first-of-file", str(keys))
    assert client_key({"TALKER_API_KEYS_FILE": str(keys)}) == ClientKey("first-of-file", str(keys))
    assert client_key({"TALKER_API_KEYS": " ,k2,k3", "TALKER_API_KEYS_FILE": str(keys)}).value == "k2"
    assert client_key({"TALKER_API_KEY": "k1", "TALKER_API_KEYS": "k2"}, default_file=keys) == ClientKey(
        "k1", "TALKER_API_KEY")
    assert client_key({"TALKER_API_KEYS_FILE": str(empty)}, default_file=keys).value == "first-of-file"
    with pytest.raises(ValueError, match="cannot read TALKER_API_KEYS_FILE"):
        client_key({"TALKER_API_KEYS_FILE": str(tmp_path / "missing")})
    key = client_key({"TALKER_API_KEY": "k1"})
    assert key.headers() == {"Authorization": "Bearer k1"} and ClientKey("", "").headers() == {}
    assert "k1" not in repr(key) and "k1" not in str(key)


def test_load_generator_sends_the_key_and_without_it_is_refused(secured: TalkerServer, tmp_path: Path) -> None:
    keys = tmp_path / "talker_api_keys"
    keys.write_text(f"{FILE_API_KEY}\n")
    before = unauthorized(secured)
    mix = {"talk_share": 0.0, "bad_share": 0.0, "stream_share": 0.5, "seed": 7, "progress": False}
    with_key = loadgen.run(secured.url, rate=2, duration=2, api_key=client_key({}, default_file=keys), **mix)
    assert with_key.counts["sent"] == 4
    assert with_key.counts["4xx"] == 0 and with_key.counts["5xx"] == 0 and with_key.counts["error"] == 0
    assert with_key.counts["ok"] >= 1 and with_key.counts["ok"] + with_key.counts["429"] == 4
    assert unauthorized(secured) == before

    keyless = loadgen.run(secured.url, rate=4, duration=1, api_key=client_key({}), **mix)
    assert keyless.counts["sent"] == 4 and keyless.counts["4xx"] == 4
    poll_until(lambda: unauthorized(secured) == before + 4, timeout=10, what="4 unauthorized refusals counted")


def test_smoke_traffic_sends_the_key_from_the_environment(secured: TalkerServer,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TALKER_API_KEYS", "TALKER_API_KEYS_FILE", "TALKER_ADMIN_TOKEN", "TALKER_ADMIN_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TALKER_API_KEY", API_KEY)
    ep = smoke.parse_args(["--talker", secured.url])[1]
    assert ep.api_key.source == "TALKER_API_KEY" and API_KEY not in repr(ep)
    before = unauthorized(secured)
    with smoke.Traffic(ep.talker, rate=8, api_key=ep.api_key) as traffic:
        poll_until(lambda: sum(traffic.statuses.values()) >= 3, timeout=60, what="3 smoke requests answered")
    assert traffic.statuses[200] >= 1 and set(traffic.statuses) <= {200, 429}, dict(traffic.statuses)
    assert unauthorized(secured) == before

    with smoke.Traffic(ep.talker, rate=8) as keyless:
        poll_until(lambda: sum(keyless.statuses.values()) >= 2, timeout=60, what="2 keyless smoke requests")
    assert set(keyless.statuses) == {401}, dict(keyless.statuses)
    assert unauthorized(secured) >= before + 2
