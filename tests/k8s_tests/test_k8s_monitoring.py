"""The chart's monitoring objects are the compose stack's monitoring, not a second copy of it.

- the PrometheusRule holds exactly the groups of prometheus/rules/*.yml, and promtool checks it and runs the
  existing unit tests (prometheus/tests/*.yml) against the extracted rules;
- the dashboard ConfigMaps carry grafana/dashboards/*.json byte for byte, labelled for Grafana's sidecar;
- each ServiceMonitor selects its Service, names a port that exists, and yields the `job` the rules query;
- the AlertmanagerConfig routes like alertmanager/alertmanager.yml, with the relay's bearer token.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_tests.k8s_helpers import REPO_ROOT, by_kind, labels_match, one

from deploy.helm import chartctl

RULE_FILES = sorted((REPO_ROOT / "prometheus" / "rules").glob("*.yml"))
RULE_TESTS = sorted((REPO_ROOT / "prometheus" / "tests").glob("*.yml"))
DASHBOARDS = sorted((REPO_ROOT / "grafana" / "dashboards").glob("*.json"))


def _promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *map(str, args)], capture_output=True, text=True, timeout=300, check=False)


def _source_groups() -> list[dict[str, Any]]:
    return [group for path in RULE_FILES for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]]


def test_the_chart_reads_rules_and_dashboards_through_symlinks() -> None:
    # One source: the chart holds links into prometheus/ and grafana/, no copies that could drift.
    files = chartctl.CHART_DIR / "files"
    assert (files / "rules").is_symlink() and (files / "rules").resolve() == REPO_ROOT / "prometheus" / "rules"
    assert (files / "dashboards").is_symlink()
    assert (files / "dashboards").resolve() == REPO_ROOT / "grafana" / "dashboards"


@pytest.mark.parametrize("variant", list(chartctl.VARIANTS))
def test_prometheus_rule_holds_exactly_the_rule_files(variants: dict[str, list[dict]], variant: str) -> None:
    rule = one(variants[variant], "PrometheusRule")
    assert rule["spec"]["groups"] == _source_groups()


def test_rule_comparison_sees_a_changed_rule(default_objects: list[dict]) -> None:
    groups = one(default_objects, "PrometheusRule")["spec"]["groups"]
    changed = yaml.safe_load(yaml.safe_dump(groups))
    changed[0]["rules"][0]["expr"] += " > 1"
    assert changed != _source_groups()


@pytest.fixture(scope="module")
def extracted_rules(default_objects: list[dict], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rendered PrometheusRule's groups as a Prometheus rule file."""
    directory = tmp_path_factory.mktemp("extracted") / "rules"
    directory.mkdir()
    path = directory / "prometheusrule.yml"
    groups = one(default_objects, "PrometheusRule")["spec"]["groups"]
    path.write_text(yaml.safe_dump({"groups": groups}, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def test_promtool_checks_the_extracted_rules(extracted_rules: Path) -> None:
    result = _promtool("check", "rules", extracted_rules)
    assert result.returncode == 0, result.stdout + result.stderr
    count = sum(len(g["rules"]) for g in _source_groups())
    assert f"SUCCESS: {count} rules found" in result.stdout, result.stdout


def test_promtool_unit_tests_pass_on_the_extracted_rules(extracted_rules: Path) -> None:
    # The chart's groups, split back into files named like prometheus/rules/ (by group name), so that each suite
    # reads the same files it reads there: the rules under test are the chart's, not the source files.
    chart_groups = {group["name"]: group for group in yaml.safe_load(extracted_rules.read_text("utf-8"))["groups"]}
    by_file = extracted_rules.parent.parent / "rules_by_file"
    by_file.mkdir()
    for path in RULE_FILES:
        names = [group["name"] for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]]
        groups = [chart_groups.pop(name) for name in names]
        (by_file / path.name).write_text(yaml.safe_dump({"groups": groups}, allow_unicode=True, sort_keys=False),
                                         "utf-8")
    assert chart_groups == {}, f"groups in the chart that no rule file holds: {sorted(chart_groups)}"
    tests_dir = extracted_rules.parent.parent / "tests"
    tests_dir.mkdir()
    for source in RULE_TESTS:
        suite = yaml.safe_load(source.read_text(encoding="utf-8"))
        names = [Path(f).name for f in suite["rule_files"]]
        assert set(names) <= {p.name for p in RULE_FILES}, source
        suite["rule_files"] = [f"../rules_by_file/{name}" for name in names]
        (tests_dir / source.name).write_text(yaml.safe_dump(suite, allow_unicode=True, sort_keys=False), "utf-8")
    # One promtool per suite, side by side: the SLO suite alone evaluates days of samples.
    runs = [
        subprocess.Popen(["promtool", "test", "rules", str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
        for path in sorted(tests_dir.glob("*.yml"))
    ]
    assert len(runs) == len(RULE_TESTS)
    for run in runs:
        output, _ = run.communicate(timeout=300)
        assert run.returncode == 0 and "SUCCESS" in output, " ".join(run.args) + "\n" + output[-4000:]


@pytest.mark.parametrize("variant", list(chartctl.VARIANTS))
def test_dashboard_configmaps_carry_the_dashboard_files_unchanged(
    variants: dict[str, list[dict]], variant: str
) -> None:
    maps = [c for c in by_kind(variants[variant], "ConfigMap") if c["metadata"]["labels"].get("grafana_dashboard")]
    found = {name: text for cm in maps for name, text in cm["data"].items()}
    assert found == {p.name: p.read_text(encoding="utf-8") for p in DASHBOARDS}
    for cm in maps:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["annotations"]["grafana_folder"] == "Talker"
        assert len(cm["data"]) == 1


# The job names prometheus/prometheus.yml gives our services; the rules and dashboards select on them.
def _compose_jobs() -> set[str]:
    config = yaml.safe_load((REPO_ROOT / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    return {job["job_name"] for job in config["scrape_configs"]}


@pytest.mark.parametrize("variant", list(chartctl.VARIANTS))
def test_service_monitors_select_their_service_and_a_named_port(
    variants: dict[str, list[dict]], variant: str
) -> None:
    objs = variants[variant]
    monitors = by_kind(objs, "ServiceMonitor")
    assert len(monitors) == 2
    jobs = set()
    for monitor in monitors:
        spec = monitor["spec"]
        assert spec["namespaceSelector"] == {"matchNames": [chartctl.NAMESPACE]}
        services = [s for s in by_kind(objs, "Service") if labels_match(spec["selector"]["matchLabels"],
                                                                       s["metadata"]["labels"])]
        assert len(services) == 1, monitor["metadata"]["name"]
        service = services[0]
        port_names = {p["name"] for p in service["spec"]["ports"]}
        for endpoint in spec["endpoints"]:
            assert endpoint["port"] in port_names
            assert endpoint["path"] == "/metrics"
        # The Service's ports reach named container ports of the pods it selects.
        pods = [d["spec"]["template"] for d in by_kind(objs, "Deployment")
                if labels_match(service["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])]
        assert len(pods) == 1
        container_ports = {p["name"] for c in pods[0]["spec"]["containers"] for p in c["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= container_ports
        jobs.add(service["metadata"]["labels"][spec["jobLabel"]])
        # The operator selects the monitor by these labels (kube-prometheus-stack: release=<its release>).
        assert labels_match({"release": "kube-prometheus-stack"}, monitor["metadata"]["labels"])
    assert jobs == {"talker", "dingtalk-relay"}
    assert jobs <= _compose_jobs()


def test_rules_query_only_jobs_that_exist_on_kubernetes(default_objects: list[dict]) -> None:
    """Each job="..." the rules name for our services is produced by a ServiceMonitor of the chart."""
    chart_jobs = {
        s["metadata"]["labels"]["app.kubernetes.io/component"] for s in by_kind(default_objects, "Service")
    }
    named = {job for path in RULE_FILES for job in re.findall(r'job="([^"]+)"', path.read_text(encoding="utf-8"))}
    ours = {job for job in named if job in {"talker", "dingtalk-relay"}}
    assert ours and ours <= chart_jobs


# --- AlertmanagerConfig <-> alertmanager/alertmanager.yml ---------------------------------------------------

_MATCHER = re.compile(r'^\s*([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"(.*)"\s*$')


def _parse_matcher(text: str) -> tuple[str, str, str]:
    match = _MATCHER.match(text)
    assert match, text
    return match.group(1), match.group(2), match.group(3)


def _compose_route(route: dict) -> dict:
    return {
        "receiver": route["receiver"],
        "groupBy": route.get("group_by"),
        "groupWait": route.get("group_wait"),
        "groupInterval": route.get("group_interval"),
        "repeatInterval": route.get("repeat_interval"),
        "matchers": sorted(_parse_matcher(m) for m in route.get("matchers", [])),
        "routes": [_compose_route(r) for r in route.get("routes", [])],
    }


def _chart_route(route: dict) -> dict:
    return {
        "receiver": route["receiver"],
        "groupBy": route.get("groupBy"),
        "groupWait": route.get("groupWait"),
        "groupInterval": route.get("groupInterval"),
        "repeatInterval": route.get("repeatInterval"),
        "matchers": sorted((m["name"], m.get("matchType", "="), m["value"]) for m in route.get("matchers", [])),
        "routes": [_chart_route(r) for r in route.get("routes", [])],
    }


def _compose_config() -> dict:
    return yaml.safe_load((REPO_ROOT / "alertmanager" / "alertmanager.yml").read_text(encoding="utf-8"))


def test_alertmanager_config_routes_like_alertmanager_yml(default_objects: list[dict]) -> None:
    spec = one(default_objects, "AlertmanagerConfig")["spec"]
    assert _chart_route(spec["route"]) == _compose_route(_compose_config()["route"])


def test_alertmanager_config_inhibits_like_alertmanager_yml(default_objects: list[dict]) -> None:
    spec = one(default_objects, "AlertmanagerConfig")["spec"]
    chart = [
        (sorted((m["name"], m["matchType"], m["value"]) for m in rule["sourceMatch"]),
         sorted((m["name"], m["matchType"], m["value"]) for m in rule["targetMatch"]), rule["equal"])
        for rule in spec["inhibitRules"]
    ]
    compose = [
        (sorted(map(_parse_matcher, rule["source_matchers"])), sorted(map(_parse_matcher, rule["target_matchers"])),
         rule["equal"])
        for rule in _compose_config()["inhibit_rules"]
    ]
    assert chart == compose


def _integrations(receiver: dict, webhooks: str, emails: str) -> dict:
    return {
        "webhooks": [
            (re.sub(r"^https?://[^/]+", "", w["url"]), w.get("send_resolved", w.get("sendResolved")),
             w.get("max_alerts", w.get("maxAlerts")))
            for w in receiver.get(webhooks) or []
        ],
        "emails": [bool(e.get("send_resolved", e.get("sendResolved"))) for e in receiver.get(emails) or []],
    }


def test_alertmanager_config_receivers_deliver_like_alertmanager_yml(default_objects: list[dict]) -> None:
    spec = one(default_objects, "AlertmanagerConfig")["spec"]
    chart = {r["name"]: _integrations(r, "webhookConfigs", "emailConfigs") for r in spec["receivers"]}
    compose = {
        r["name"]: _integrations(r, "webhook_configs", "email_configs") for r in _compose_config()["receivers"]
    }
    assert chart == compose


def test_every_relay_webhook_sends_the_bearer_token_from_the_secret(default_objects: list[dict]) -> None:
    amc = one(default_objects, "AlertmanagerConfig")
    relay = one(default_objects, "Service", "dingtalk-relay")
    hooks = [w for r in amc["spec"]["receivers"] for w in r.get("webhookConfigs", [])]
    assert len(hooks) == 3
    for hook in hooks:
        host = f"http://{relay['metadata']['name']}.{chartctl.NAMESPACE}.svc:{relay['spec']['ports'][0]['port']}/"
        assert hook["url"].startswith(host)
        assert hook["httpConfig"]["authorization"] == {
            "type": "Bearer", "credentials": {"name": "relay-webhook-token", "key": "token"},
        }
    # The relay reads the same Secret key.
    pod = one(default_objects, "Deployment", "dingtalk-relay")["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    volume = next(v for v in pod["volumes"] if v["name"] == "webhook-token")
    assert volume["secret"]["secretName"] == "relay-webhook-token"
    assert env["RELAY_WEBHOOK_TOKEN_FILE"].endswith("/token")


def test_custom_email_templates_are_the_ones_alertmanager_templates_define() -> None:
    amc = one(chartctl.objects(chartctl.render({"alertmanagerConfig": {"email": {"customTemplates": True}}})),
              "AlertmanagerConfig")
    (email,) = next(r for r in amc["spec"]["receivers"] if r["name"] == "oncall-critical")["emailConfigs"]
    used = set(re.findall(r'template "([^"]+)"', yaml.safe_dump(email)))
    defined = set(re.findall(r'define "([^"]+)"', (REPO_ROOT / "alertmanager/templates/email.tmpl").read_text("utf-8")))
    compose = _compose_config()
    compose_email = next(r for r in compose["receivers"] if r["name"] == "oncall-critical")["email_configs"][0]
    assert used == set(re.findall(r'template "([^"]+)"', yaml.safe_dump(compose_email)))
    assert used and used <= defined
