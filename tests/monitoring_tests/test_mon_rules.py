"""Prometheus rules as code: promtool accepts them, every alert is unit-tested both ways, and every
alert carries what a 3 a.m. on-call needs (severity, Chinese summary with value and instance, a
runbook link that lands on a real heading)."""

from __future__ import annotations

import re
from pathlib import Path

import contract
import pytest
import yaml
from monitoring_tests.mon_helpers import REPO_ROOT, assert_metric_names_defined, run_tool

from stack.config_render import RenderedConfig, RenderError, render

PROMETHEUS_DIR = REPO_ROOT / "prometheus"
UNIT_TEST_FILES = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
RUNBOOK = REPO_ROOT / "docs" / "runbook.md"
RUNBOOK_BASE = "https://github.com/talker-stack/talker-stack/blob/main/docs/runbook.md#"
# The dead man's switch fires by design; a "must not fire" case cannot exist for it.
ALWAYS_FIRING = {"Watchdog"}
# Alerts about the whole service (SLO burn, replica count) or a missing target have no instance to name.
NO_INSTANCE = {"TalkerAbsent", "TalkerReplicaMissing", "TalkerAvailabilityErrorBudgetBurn",
               "TalkerLatencyErrorBudgetBurn", "TalkerTTFAErrorBudgetBurn", "TalkerChatLatencyErrorBudgetBurn",
               "Watchdog"}


def alert_rules() -> list[dict]:
    return [rule for rule in contract.rules() if "alert" in rule]


def github_slug(heading: str) -> str:
    slug = heading.strip().lower()
    slug = re.sub(r"[^\w\- ]", "", slug)
    return slug.replace(" ", "-")


def test_promtool_accepts_the_committed_config_and_rules() -> None:
    result = run_tool("promtool", "check", "config", PROMETHEUS_DIR / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    result = run_tool("promtool", "check", "rules", *contract.rule_files())
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("profile", ["default", "demo", "fast"])
def test_promtool_accepts_rendered_config(rendered_profiles: dict[str, RenderedConfig], profile: str) -> None:
    result = run_tool("promtool", "check", "config", rendered_profiles[profile].prometheus_config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 0 rules found" not in result.stdout, "rule_files did not resolve next to the rendered config"


def test_promtool_unit_tests_pass() -> None:
    result = run_tool("promtool", "test", "rules", *UNIT_TEST_FILES, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


def promtool_cases() -> tuple[set[str], set[str]]:
    """(alerts with a firing case that checks annotations, alerts with a must-not-fire case)."""
    fires, quiet = set(), set()
    for path in UNIT_TEST_FILES:
        for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for case in test.get("alert_rule_test", []):
                expected = case.get("exp_alerts") or []
                if not expected:
                    quiet.add(case["alertname"])
                elif all(alert.get("exp_annotations") and alert.get("exp_labels") for alert in expected):
                    fires.add(case["alertname"])
    return fires, quiet


@pytest.mark.monitoring_lint
def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    names = {rule["alert"] for rule in alert_rules()}
    fires, quiet = promtool_cases()
    assert names - fires == set(), "alerts without a firing promtool case (with exp_labels and exp_annotations)"
    assert names - ALWAYS_FIRING - quiet == set(), "alerts without a must-not-fire promtool case"
    assert (fires | quiet) - names == set(), "promtool cases for alerts that no longer exist"


def test_every_severity_level_of_an_alert_is_tested() -> None:
    tested: set[tuple[str, str]] = set()
    for path in UNIT_TEST_FILES:
        for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for case in test.get("alert_rule_test", []):
                for alert in case.get("exp_alerts") or []:
                    tested.add((case["alertname"], alert["exp_labels"]["severity"]))
    defined = {(rule["alert"], rule["labels"]["severity"]) for rule in alert_rules()}
    assert defined - tested == set()


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: f"{r['alert']}-{r['labels']['severity']}")
def test_alert_has_labels_and_chinese_annotations(rule: dict) -> None:
    labels, annotations = rule["labels"], rule["annotations"]
    allowed = {"critical", "warning", "info"}  # Watchdog too: routed by its name, never by severity
    assert labels.get("severity") in allowed
    assert labels.get("service")
    for key in ("summary", "description"):
        assert re.search(r"[\u4e00-\u9fff]", annotations[key]), f"{key} should be Chinese"
    text = annotations["summary"] + annotations["description"]
    assert "$value" in text, "show the value that triggered the alert"
    if rule["alert"] not in NO_INSTANCE:
        assert "$labels.instance" in text, "name the instance"


@pytest.mark.monitoring_lint
def test_runbook_links_land_on_existing_headings() -> None:
    headings = {github_slug(line.lstrip("#")) for line in RUNBOOK.read_text(encoding="utf-8").splitlines()
                if line.startswith("#")}
    for rule in alert_rules():
        url = rule["annotations"]["runbook_url"]
        assert url.startswith(RUNBOOK_BASE), url
        assert url.removeprefix(RUNBOOK_BASE) in headings, f"{rule['alert']}: no heading for {url} in {RUNBOOK}"


def test_fast_profile_shortens_every_for(rendered_profiles: dict[str, RenderedConfig]) -> None:
    from stack.config_render import parse_duration

    fast_rules = list(contract.rules(sorted(Path(rendered_profiles["fast"].rules_dir).glob("*.yml"))))
    assert len(fast_rules) == len(list(contract.rules()))
    assert all(parse_duration(rule.get("for", "0s")) <= 10 for rule in fast_rules)
    result = run_tool("promtool", "check", "rules", *sorted(Path(rendered_profiles["fast"].rules_dir).glob("*.yml")))
    assert result.returncode == 0, result.stdout + result.stderr


def test_metric_names_in_rules_are_defined_by_the_services_or_recording_rules() -> None:
    assert_metric_names_defined(contract.rule_queries())


def test_ttfa_slo_bucket_and_alert_threshold_exist_in_talker_histogram() -> None:
    # The TTFA SLI reads le="0.5" and TalkerSlowFirstAudio interpolates around 1 s: both must be bucket bounds.
    from talker.metrics import FIRST_OUTPUT_BUCKETS

    assert 0.5 in FIRST_OUTPUT_BUCKETS and 1.0 in FIRST_OUTPUT_BUCKETS


def test_latency_slo_bucket_exists_in_talker_histogram() -> None:
    # The latency SLI reads the le="2" bucket; without it the latency SLO silently records nothing.
    from talker.metrics import DURATION_BUCKETS

    assert 2.0 in DURATION_BUCKETS, "talker_http_request_duration_seconds needs a 2.0 s bucket for the latency SLO"


def test_talker_replicas_is_rendered_into_the_expected_count(tmp_path: Path) -> None:
    """TALKER_REPLICAS (compose's deploy.replicas) becomes talker:replicas:expected, evaluated by real promtool."""
    rendered = render(tmp_path / "out", profile="fast", env={"TALKER_REPLICAS": "3"})
    unit_test = tmp_path / "expected_test.yml"
    unit_test.write_text(yaml.safe_dump({
        "rule_files": [str(rendered.rules_dir / "replicas_expected.yml")],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "promql_expr_test": [{
            "expr": "talker:replicas:expected", "eval_time": "1m",
            "exp_samples": [{"labels": 'talker:replicas:expected{job="talker"}', "value": 3}]}]}],
    }), encoding="utf-8")
    result = run_tool("promtool", "test", "rules", unit_test)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("value", ["0", "257", "two", "-1", "1.5"])
def test_talker_replicas_outside_1_to_256_is_refused_by_name(tmp_path: Path, value: str) -> None:
    with pytest.raises(RenderError, match="TALKER_REPLICAS"):
        render(tmp_path / "out", profile="fast", env={"TALKER_REPLICAS": value})


def test_talker_replicas_bounds_are_accepted(tmp_path: Path) -> None:
    for value in ("1", "256"):
        rendered = render(tmp_path / value, profile="fast", env={"TALKER_REPLICAS": value})
        assert f"expr: vector({value})" in (rendered.rules_dir / "replicas_expected.yml").read_text(encoding="utf-8")


def test_llm_failure_outcomes_in_the_rules_are_the_stages_own() -> None:
    # The failed-request ratio names the failure outcomes in a regex: they must be talker.llm's, all of them, and
    # the denominator must leave out exactly cancelled (the user's barge-in), keeping completed and the failures.
    from talker.llm import LLM_FAILURES, LLM_OUTCOMES

    recorded = {rule["record"]: rule["expr"] for rule in contract.rules() if "record" in rule}
    ratio = recorded["instance:talker_llm_requests_failed:ratio_rate5m"]
    match = re.search(r'talker_llm_requests_total\{outcome=~"([^"]+)"\}', ratio)
    assert match, ratio
    assert set(match.group(1).split("|")) == set(LLM_FAILURES)
    assert set(LLM_OUTCOMES) - set(LLM_FAILURES) == {"completed", "cancelled"}
    assert 'outcome!="cancelled"' in recorded["instance:talker_llm_requests:rate5m"]


def test_llm_first_token_alert_threshold_is_a_bucket_bound() -> None:
    # TalkerLLMSlowFirstToken interpolates around 2 s: without that bound the p95 would blur across a wide bucket.
    from talker.metrics import LLM_FIRST_TOKEN_BUCKETS

    slow = next(rule for rule in alert_rules() if rule["alert"] == "TalkerLLMSlowFirstToken")
    threshold = float(re.search(r">\s*(\d+(?:\.\d+)?)", slow["expr"]).group(1))  # type: ignore[union-attr]
    assert threshold == 2.0 and threshold in LLM_FIRST_TOKEN_BUCKETS
