"""Each SLO is written once, in prometheus/slo/slos.yml: the committed rules are the generator's output, and the
copies that cannot be generated (talker's histogram buckets, dashboard and runbook texts, the docs' tables) are
checked against the spec's objectives, thresholds and windows."""

from __future__ import annotations

import json
import re
from pathlib import Path

import contract
import pytest
import yaml
from monitoring_tests.mon_helpers import REPO_ROOT
from prometheus_client import Histogram

from prometheus.slo import generate
from prometheus.slo.spec import SLO, SPEC_FILE, SLOSpec, load_spec, promql_number

pytestmark = pytest.mark.monitoring_lint

SLO_RULES = REPO_ROOT / "prometheus" / "rules" / "slo.yml"
SPEC = load_spec()


def _render(spec_text: str, tmp_path: Path) -> str:
    path = tmp_path / "slos.yml"
    path.write_text(spec_text, encoding="utf-8")
    return generate.render(load_spec(path))


def test_committed_slo_rules_equal_generator_output() -> None:
    assert SLO_RULES.read_text(encoding="utf-8") == generate.render(SPEC), "run: make slo-rules"


@pytest.mark.parametrize(("before", "after", "expected"), [
    ("objective: 99.5\n", "objective: 99.9\n", "vector(0.999)"),
    ("threshold_seconds: 2\n", "threshold_seconds: 2.5\n", 'le="2.5"'),
    ("{short: 30m, long: 6h, burn_rate: 6}", "{short: 30m, long: 6h, burn_rate: 7}", "(7 * (1 - max("),
    ("{short: 6h, long: 3d, burn_rate: 1}", "{short: 6h, long: 4d, burn_rate: 1}", "slo_ttfa_errors:ratio_rate4d"),
])
def test_a_spec_change_without_regenerating_fails_the_comparison(
    tmp_path: Path, before: str, after: str, expected: str
) -> None:
    text = SPEC_FILE.read_text(encoding="utf-8")
    assert text.count(before) == 1, before
    changed = _render(text.replace(before, after), tmp_path)
    assert changed != SLO_RULES.read_text(encoding="utf-8")
    assert expected in changed and expected not in generate.render(SPEC)


def test_every_slo_rule_is_in_the_generated_file_only() -> None:
    # Hand-written rule files keep no SLO series: each is recorded once, from the spec.
    generated = {rule.get("record") or rule.get("alert") for rule in contract.rules([SLO_RULES])}
    for path in contract.rule_files():
        if path == SLO_RULES:
            continue
        for rule in contract.rules([path]):
            name = rule.get("record") or rule.get("alert")
            assert name not in generated, f"{path.name}: {name} is generated into slo.yml"
            assert ":slo_" not in rule.get("record", ""), f"{path.name}: {name} belongs in prometheus/slo/slos.yml"
    alerts = {rule["alert"] for rule in contract.rules([SLO_RULES]) if "alert" in rule}
    assert alerts == {slo.alerting.name for slo in SPEC.slos}


def test_generated_rules_record_the_spec_values() -> None:
    recorded = {rule["record"]: rule["expr"] for rule in contract.rules([SLO_RULES]) if "record" in rule}
    assert recorded["talker:slo_availability:objective"] == "vector(0.995)"
    assert recorded["talker:slo_latency:objective"] == "vector(0.95)"
    assert recorded["talker:slo_latency:threshold_seconds"] == "vector(2)"
    assert 'le=~"2|2\\\\.0"' in recorded["talker:slo_latency_errors:ratio_rate1h"]
    assert recorded["talker:slo_ttfa:threshold_seconds"] == "vector(0.5)"
    assert 'le="0.5"' in recorded["talker:slo_ttfa_errors:ratio_rate1h"]
    for slo in SPEC.slos:
        assert {f"talker:slo_{slo.name}_errors:ratio_rate{w}" for w in SPEC.windows} <= set(recorded)
    assert SPEC.windows == ["5m", "30m", "1h", "2h", "6h", "1d", "3d"]


def test_spec_rejects_what_would_generate_nonsense(tmp_path: Path) -> None:
    text = SPEC_FILE.read_text(encoding="utf-8")
    for before, after in [
        ("objective: 99.5\n", "objective: 100\n"),  # no budget at all
        ("budget_period: 30d", "budget_period: 30x"),  # not a duration
        ("${objective}）。", "${objectiv}）。"),  # a placeholder that would be left in the text
        ("objective: 99.5\n", "objective: 99.5\n    sla: 1\n"),  # an unknown (misspelt) field
    ]:
        with pytest.raises(ValueError):
            SLOSpec.model_validate(yaml.safe_load(text.replace(before, after, 1)))


def test_latency_thresholds_are_bucket_bounds_of_talker_histograms() -> None:
    # A threshold between two bucket bounds matches no bucket: the SLI would silently record nothing.
    from talker.metrics import TalkerMetrics

    metrics = TalkerMetrics(tts_engine="espeak")
    bounds = {h._name: h._upper_bounds for h in vars(metrics).values() if isinstance(h, Histogram)}
    latency = [slo for slo in SPEC.slos if slo.sli.latency]
    assert {slo.name for slo in latency} == {"latency", "ttfa", "chat"}
    for slo in latency:
        assert slo.sli.latency
        assert slo.sli.latency.threshold_seconds in bounds[slo.sli.latency.histogram], slo.name


def _slo_dashboard() -> list[dict]:
    dashboard = json.loads((REPO_ROOT / "grafana" / "dashboards" / "talker-slo.json").read_text(encoding="utf-8"))
    return list(contract.dashboard_panels(dashboard))


@pytest.mark.parametrize("slo", SPEC.slos, ids=lambda s: s.name)
def test_slo_dashboard_states_the_spec(slo: SLO) -> None:
    panels = _slo_dashboard()
    budget = next(p for p in panels if any(t["expr"] == f"talker:slo_{slo.name}:error_budget_remaining"
                                           for t in p["targets"]))
    assert f"{promql_number(slo.objective)}%" in budget["description"], budget["title"]
    if slo.threshold_seconds is not None:
        assert f"{promql_number(slo.threshold_seconds)} 秒" in budget["description"], budget["title"]
    burn = next(p for p in panels if p.get("targets") and all(f"talker:slo_{slo.name}_errors:ratio_rate" in t["expr"]
                                                              for t in p["targets"]))
    assert [t["legendFormat"] for t in burn["targets"]] == SPEC.windows


def _section(path: Path, heading: str) -> str:
    text = path.read_text(encoding="utf-8")
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


@pytest.mark.parametrize("slo", SPEC.slos, ids=lambda s: s.name)
def test_runbook_and_readme_state_the_spec(slo: SLO) -> None:
    objective = promql_number(slo.objective)
    runbook = _section(REPO_ROOT / "docs" / "runbook.md", slo.alerting.name)
    assert f"{objective}%" in runbook
    readme_row = next(line for line in (REPO_ROOT / "README.md").read_text(encoding="utf-8").splitlines()
                      if line.startswith(f"| [{slo.alerting.name}]"))
    assert f"{objective} %" in readme_row
    if slo.threshold_seconds is not None:
        assert f"{promql_number(slo.threshold_seconds)} 秒" in runbook
        assert f"{promql_number(slo.threshold_seconds)} s" in readme_row


def test_alerting_doc_table_states_the_spec() -> None:
    rows = {}
    for line in _section(REPO_ROOT / "docs" / "alerting.md", "SLOs").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 4:
            rows[cells[0].strip("`")] = cells
    assert set(rows) == {slo.name for slo in SPEC.slos}
    for slo in SPEC.slos:
        _, objective, threshold, *_ = rows[slo.name]
        assert objective == f"{promql_number(slo.objective)} %"
        expected = "–" if slo.threshold_seconds is None else f"{promql_number(slo.threshold_seconds)} s"
        assert threshold == expected, slo.name
    burn_rates = {promql_number(p.burn_rate) for level in (SPEC.alerting.page, SPEC.alerting.ticket)
                  for p in level.windows}
    text = _section(REPO_ROOT / "docs" / "alerting.md", "SLOs")
    for rate in burn_rates:
        assert re.search(rf"\b{re.escape(rate)}×", text), rate
