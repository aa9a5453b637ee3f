"""Target configuration from env, YAML and *_FILE secrets; durations; readiness when config is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
from dingtalk_relay.durations import parse_duration
from dingtalk_relay.settings import RelaySettings, positive_duration
from dingtalk_relay.targets import TargetConfigError, load_targets
from fastapi.testclient import TestClient
from relay_tests.relay_helpers import AUTH, WEBHOOK_TOKEN


def settings(**kw: object) -> RelaySettings:
    return RelaySettings(_env_file=None, **{"webhook_token": WEBHOOK_TOKEN, **kw})  # type: ignore[arg-type]


def test_relay_default_target_from_env_alone(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RELAY_DINGTALK_TOKEN", " env-token ")
    monkeypatch.setenv("RELAY_DINGTALK_SECRET", "SECenv")
    monkeypatch.setenv("RELAY_DINGTALK_KEYWORD", "告警")
    monkeypatch.setenv("RELAY_DINGTALK_AT_MOBILES", "13800000000, 13900000000")
    monkeypatch.setenv("RELAY_HEARTBEAT_TIMEOUT", "30s")
    monkeypatch.setenv("RELAY_DELIVERY_DEADLINE", "8")
    s = RelaySettings()
    [target] = load_targets(s).values()
    assert target.name == "default" and target.token.get_secret_value() == "env-token"
    assert target.secret is not None and target.secret.get_secret_value() == "SECenv"
    assert target.at_mobiles == ("13800000000", "13900000000") and target.keyword == "告警"
    assert target.api_base == "https://oapi.dingtalk.com" and target.mention_severities == {"critical"}
    assert s.heartbeat_timeout == 30 and s.heartbeat_tick == 3 and s.delivery_deadline == 8
    assert "env-token" not in repr(target) and "SECenv" not in repr(target)


def test_relay_secret_files_and_yaml_targets(tmp_path: Path):
    (tmp_path / "token").write_text("file-token\n")
    (tmp_path / "secret").write_text("SECfile\n")
    (tmp_path / "targets.yml").write_text(
        """
targets:
  oncall-db:
    token_env: DB_ROBOT_TOKEN
    secret_file: {secret}
    keyword: 数据库
    at_mobiles: ["13700000000"]
    at_all: true
    mention_severities: [critical, warning]
    api_base: http://standin:8070/
""".format(secret=tmp_path / "secret")
    )
    s = settings(dingtalk_token_file=tmp_path / "token", targets_file=tmp_path / "targets.yml")
    targets = load_targets(s, environ={"DB_ROBOT_TOKEN": "db-token"})
    assert sorted(targets) == ["default", "oncall-db"]
    assert targets["default"].token.get_secret_value() == "file-token" and targets["default"].secret is None
    db = targets["oncall-db"]
    assert db.token.get_secret_value() == "db-token" and db.secret.get_secret_value() == "SECfile"  # type: ignore
    assert db.at_all and db.mention_severities == {"critical", "warning"} and db.api_base == "http://standin:8070"


def test_relay_empty_secret_file_means_unsigned_robot_but_empty_token_file_is_an_error(tmp_path: Path):
    # Compose mounts secrets/dingtalk_secret always; a robot without 加签 leaves it empty.
    (tmp_path / "token").write_text("file-token\n")
    (tmp_path / "secret").write_text("\n")
    s = settings(dingtalk_token_file=tmp_path / "token", dingtalk_secret_file=tmp_path / "secret")
    [target] = load_targets(s).values()
    assert target.token.get_secret_value() == "file-token" and target.secret is None
    (tmp_path / "token").write_text("")
    with pytest.raises(TargetConfigError, match=r"token_file .* is empty"):
        load_targets(s)


@pytest.mark.parametrize(
    ("yaml_text", "env", "expected"),
    [
        ("targets: {a: {}}", {}, "token"),
        ("targets: {a: {token: t, token_env: X}}", {"X": "y"}, "only one of"),
        ("targets: {a: {token_env: MISSING}}", {}, "MISSING"),
        ("targets: {a: {token: t, colour: red}}", {}, "unknown keys"),
        ("targets: {Bad Name: {token: t}}", {}, "must match"),
        ("targets: {a: {token: t, at_mobiles: [call-me]}}", {}, "phone"),
        ("targets: {a: {token: t, api_base: ftp://x}}", {}, "api_base"),
        ("targets: {default: {token: t}}", {}, "both"),
        ("targets: [1, 2]", {}, "top-level"),
        ("targets: {a: {token: 'supersecret-token', bad: [}", {}, "not valid YAML at line"),
    ],
)
def test_relay_invalid_target_config_names_the_problem_not_the_secret(
    tmp_path: Path, yaml_text: str, env: dict[str, str], expected: str
):
    (tmp_path / "t.yml").write_text(yaml_text)
    s = settings(dingtalk_token="envtok", targets_file=tmp_path / "t.yml")
    with pytest.raises(TargetConfigError) as info:
        load_targets(s, environ=env)
    assert expected in str(info.value)
    assert "supersecret" not in str(info.value) and "envtok" not in str(info.value)


def test_relay_durations():
    assert [positive_duration(v) for v in ("5m", "30s", "1h30m", "250ms", "12", 7, "1.5")] == [
        300,
        30,
        5400,
        0.25,
        12,
        7,
        1.5,
    ]
    for bad in ("soon", "5x", "-3", "0", "m5"):
        with pytest.raises(ValueError):
            positive_duration(bad)


def test_one_duration_parser_for_relay_settings_and_config_render():
    from stack import config_render

    assert config_render.parse_duration is parse_duration  # re-exported, not a copy
    # Prometheus' own syntax (what config_render reads from rule files) as well as the relay's plain seconds.
    assert [parse_duration(v) for v in ("0s", "0", "2d", "1w", "1y", "1m30s", "90", 2.5)] == [
        0, 0, 172800, 604800, 31536000, 90, 90, 2.5,
    ]
    for bad in ("", "30 s", "1h-5m", "5x", "nan", "inf", "-1s", -1):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_relay_not_ready_and_503_when_misconfigured(tmp_path: Path):
    from dingtalk_relay.app import create_app

    with TestClient(create_app(settings()), headers=AUTH) as client:  # no target at all
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "no DingTalk target" in ready.json()["reason"]
        assert client.get("/healthz").status_code == 200
        answer = client.post("/alertmanager/default", json={})
        assert answer.status_code == 503 and answer.json()["error"] == "not_configured"
    with TestClient(create_app(settings(dingtalk_token="t", heartbeat_target="ops")), headers=AUTH) as client:
        assert "RELAY_HEARTBEAT_TARGET" in client.get("/readyz").json()["reason"]
    (tmp_path / "alerts.md.j2").write_text("{% for %}")
    with TestClient(create_app(settings(dingtalk_token="t", templates_dir=tmp_path)), headers=AUTH) as client:
        assert "TemplateSyntaxError" in client.get("/readyz").json()["reason"]


def test_relay_defaults_are_the_stacks():
    """The relay image holds no stack/ code, so its defaults are literals: the same as stack/defaults.py's."""
    from stack.defaults import ALERT_TIMEZONE, LISTENERS

    assert RelaySettings.model_fields["timezone"].default == ALERT_TIMEZONE
    assert RelaySettings.model_fields["port"].default == LISTENERS["relay"].port
