"""Alertmanager config as code: the rendered file is valid for every profile, alerts reach the
right receivers (checked by amtool against the real routing tree), and the renderer keeps secrets
and addresses where they belong."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from monitoring_tests.mon_helpers import run_tool

from stack.config_render import RenderedConfig, RenderError, render

# label set -> receivers that must get it (and no others)
ROUTING_TABLE = [
    ({"alertname": "TalkerDown", "severity": "critical", "service": "talker", "instance": "talker:8001"},
     "oncall-critical"),
    ({"alertname": "TalkerHighLatency", "severity": "warning", "service": "talker"}, "oncall-warning"),
    ({"alertname": "TalkerFaultInjectionActive", "severity": "info", "service": "talker"}, "blackhole"),
    ({"alertname": "Watchdog", "severity": "info", "service": "monitoring"}, "heartbeat"),
    # Even if someone tags the Watchdog critical it must never page a human.
    ({"alertname": "Watchdog", "severity": "critical"}, "heartbeat"),
    ({"alertname": "SomethingNew", "service": "talker"}, "oncall-warning"),  # no severity: still seen
    ({"alertname": "DingtalkRelayDeliveryFailing", "severity": "critical", "service": "dingtalk-relay"},
     "oncall-critical"),
]


@pytest.mark.parametrize("profile", ["default", "demo", "fast"])
def test_amtool_accepts_rendered_config(rendered_profiles: dict[str, RenderedConfig], profile: str) -> None:
    result = run_tool("amtool", "check-config", rendered_profiles[profile].alertmanager_config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 templates" in result.stdout and "4 receivers" in result.stdout, result.stdout


@pytest.mark.monitoring_lint
@pytest.mark.parametrize(
    ("labels", "receiver"), ROUTING_TABLE, ids=[f"{lab['alertname']}-{r}" for lab, r in ROUTING_TABLE]
)
def test_alert_routes_to_expected_receiver(
    rendered_profiles: dict[str, RenderedConfig], labels: dict[str, str], receiver: str
) -> None:
    config = rendered_profiles["default"].alertmanager_config
    argv = ["amtool", "config", "routes", "test", f"--config.file={config}", f"--verify.receivers={receiver}"]
    result = run_tool(*argv, *(f"{k}={v}" for k, v in labels.items()))
    assert result.returncode == 0, result.stdout + result.stderr


def test_critical_goes_to_dingtalk_with_mentions_and_email(rendered_profiles: dict[str, RenderedConfig]) -> None:
    config = yaml.safe_load(rendered_profiles["default"].alertmanager_config.read_text(encoding="utf-8"))
    receivers = {r["name"]: r for r in config["receivers"]}
    critical = receivers["oncall-critical"]
    assert [w["url"] for w in critical["webhook_configs"]] == ["http://dingtalk-relay:8060/alertmanager/default"]
    assert critical["email_configs"][0]["to"] == "oncall@example.com"
    for name in ("oncall-critical", "oncall-warning"):
        assert all(w["send_resolved"] for w in receivers[name]["webhook_configs"])
    assert [w["url"] for w in receivers["heartbeat"]["webhook_configs"]] == ["http://dingtalk-relay:8060/heartbeat"]
    assert "webhook_configs" not in receivers["blackhole"] and "email_configs" not in receivers["blackhole"]


def test_email_template_renders_chinese_with_links(rendered_profiles: dict[str, RenderedConfig]) -> None:
    templates = rendered_profiles["default"].templates_dir
    for name in ("talker.email.subject", "talker.email.text", "talker.email.html"):
        result = run_tool("amtool", "template", "render", f"--template.glob={templates}/*.tmpl",
                          f'--template.text={{{{ template "{name}" . }}}}')
        assert result.returncode == 0, result.stdout + result.stderr
        assert "恢复" in result.stdout or "告警" in result.stdout
    assert "${" not in result.stdout, "a placeholder was left unrendered"
    assert "http://localhost:3000/d/talker-overview" in result.stdout  # GRAFANA_URL default
    assert "/#/silences/new?filter=" in result.stdout and "https://generatorurl.com" in result.stdout


def test_profiles_change_only_timings(rendered_profiles: dict[str, RenderedConfig]) -> None:
    default = yaml.safe_load(rendered_profiles["default"].alertmanager_config.read_text(encoding="utf-8"))
    fast = yaml.safe_load(rendered_profiles["fast"].alertmanager_config.read_text(encoding="utf-8"))
    assert fast["route"]["group_wait"] == "1s" and default["route"]["group_wait"] == "30s"
    for config in (default, fast):
        for timer in ("group_wait", "group_interval", "repeat_interval"):
            config["route"].pop(timer)
            for child in config["route"]["routes"]:
                child.pop(timer, None)
        config["global"].pop("resolve_timeout")
    assert fast == default
    assert "--rules.alert.resend-delay=1s" in rendered_profiles["fast"].prometheus_args


def test_smtp_password_from_file_is_referenced_not_copied(tmp_path: Path) -> None:
    secret = tmp_path / "smtp_password"
    secret.write_text("s3cret-from-file\n")
    env = {"SMTP_AUTH_USERNAME": "bot", "SMTP_AUTH_PASSWORD_FILE": str(secret), "SMTP_AUTH_PASSWORD": "ignored"}
    rendered = render(tmp_path / "out", env=env)
    text = rendered.alertmanager_config.read_text(encoding="utf-8")
    smtp = yaml.safe_load(text)["global"]
    assert smtp["smtp_auth_password_file"] == str(secret)
    assert "smtp_auth_password" not in smtp and "s3cret" not in text and "ignored" not in text
    result = run_tool("amtool", "check-config", rendered.alertmanager_config)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_webhook_to_the_relay_carries_its_bearer_token_file(tmp_path: Path) -> None:
    default = yaml.safe_load(render(tmp_path / "a", env={}).alertmanager_config.read_text(encoding="utf-8"))
    local = render(tmp_path / "b", env={"RELAY_WEBHOOK_TOKEN_FILE": "/tmp/x/relay_webhook_token"},
                   addresses={"dingtalk-relay": "127.0.0.1:18060"})
    moved = yaml.safe_load(local.alertmanager_config.read_text(encoding="utf-8"))
    for config, path in ((default, "/run/secrets/relay_webhook_token"), (moved, "/tmp/x/relay_webhook_token")):
        webhooks = [w for r in config["receivers"] for w in r.get("webhook_configs", [])]
        assert len(webhooks) == 3
        for webhook in webhooks:
            assert webhook["http_config"]["authorization"] == {"type": "Bearer", "credentials_file": path}
    result = run_tool("amtool", "check-config", local.alertmanager_config)
    assert result.returncode == 0, result.stdout + result.stderr
    for bad in ("relative/token", "/path with space", "/x\n/y"):
        with pytest.raises(RenderError, match="RELAY_WEBHOOK_TOKEN_FILE"):
            render(tmp_path / "bad", env={"RELAY_WEBHOOK_TOKEN_FILE": bad})


def test_no_smtp_login_means_no_auth_fields(tmp_path: Path) -> None:
    rendered = render(tmp_path, env={})
    smtp = yaml.safe_load(rendered.alertmanager_config.read_text(encoding="utf-8"))["global"]
    assert smtp["smtp_smarthost"] == "mailpit:1025" and smtp["smtp_require_tls"] is False
    assert not any(key.startswith("smtp_auth") for key in smtp)


def test_values_cannot_break_out_of_their_field(tmp_path: Path) -> None:
    hostile = 'x@y.z"\nreceivers: []\n#'
    rendered = render(tmp_path, env={"ALERT_EMAIL_TO": hostile})
    config = yaml.safe_load(rendered.alertmanager_config.read_text(encoding="utf-8"))
    assert len(config["receivers"]) == 4
    assert config["receivers"][1]["email_configs"][0]["to"] == hostile
    with pytest.raises(RenderError, match="GRAFANA_URL"):
        render(tmp_path / "bad", env={"GRAFANA_URL": "http://x/{{ .Alerts }}"})
    with pytest.raises(RenderError, match="SMTP_REQUIRE_TLS"):
        render(tmp_path / "bad2", env={"SMTP_REQUIRE_TLS": "maybe"})


def test_local_addresses_and_gpu_rewrite_only_addresses(tmp_path: Path) -> None:
    addresses = {"talker": "127.0.0.1:18001", "dingtalk-relay": "127.0.0.1:18060", "mailpit": "127.0.0.1:11025",
                 "alertmanager": "127.0.0.1:19093", "prometheus": "127.0.0.1:19090"}
    rendered = render(tmp_path, env={}, gpu=True, addresses=addresses)
    prom = yaml.safe_load(rendered.prometheus_config.read_text(encoding="utf-8"))
    targets = {job["job_name"]: job["static_configs"][0] for job in prom["scrape_configs"]}
    # talker's DNS discovery of compose replicas becomes the one local process.
    talker = next(job for job in prom["scrape_configs"] if job["job_name"] == "talker")
    assert "dns_sd_configs" not in talker and talker["static_configs"] == [{"targets": ["127.0.0.1:18001"]}]
    assert talker["relabel_configs"] == [{"target_label": "gpu_expected", "replacement": "true"}]
    assert targets["prometheus"]["targets"] == ["127.0.0.1:19090"]
    assert targets["node-exporter"]["targets"] == ["node-exporter:9100"]  # not given: unchanged
    assert targets["dcgm-exporter"]["targets"] == ["dcgm-exporter:9400"]
    assert prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:19093"]
    am = yaml.safe_load(rendered.alertmanager_config.read_text(encoding="utf-8"))
    urls = [w["url"] for r in am["receivers"] for w in r.get("webhook_configs", [])]
    assert urls and all(u.startswith("http://127.0.0.1:18060/") for u in urls)
    assert am["global"]["smtp_smarthost"] == "127.0.0.1:11025"
    with pytest.raises(RenderError, match="unknown service"):
        render(tmp_path / "x", env={}, addresses={"grafana": "127.0.0.1:3000"})


def test_cli_writes_config_and_prints_flags(tmp_path: Path) -> None:
    import sys

    result = run_tool(sys.executable, "-m", "stack.config_render", "--out", tmp_path, "--profile", "fast",
                      "--local", "talker=127.0.0.1:18001")
    assert result.returncode == 0, result.stderr
    assert '"--rules.alert.resend-delay=1s"' in result.stdout
    assert (tmp_path / "prometheus" / "rules" / "alerts.yml").exists()
    bad = run_tool(sys.executable, "-m", "stack.config_render", "--out", tmp_path, "--local", "talker")
    assert bad.returncode == 2 and "service=host:port" in bad.stderr
