"""Grafana dashboards as code: committed JSON is the generator's output, every panel is usable
(unit, description, provisioned datasource) and every metric it names is defined somewhere real."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import contract
import pytest
import yaml
from monitoring_tests.mon_helpers import REPO_ROOT, assert_metric_names_defined

pytestmark = pytest.mark.monitoring_lint

GRAFANA = REPO_ROOT / "grafana"
DASHBOARD_FILES = contract.dashboard_files()


def provisioned_datasource_uids() -> dict[str, str]:
    uids = {}
    for path in (GRAFANA / "provisioning" / "datasources").glob("*.yml"):
        for ds in yaml.safe_load(path.read_text(encoding="utf-8"))["datasources"]:
            uids[ds["type"]] = ds["uid"]
    return uids


def load_generator():
    spec = importlib.util.spec_from_file_location("build_dashboards", GRAFANA / "build_dashboards.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_committed_dashboards_equal_generator_output() -> None:
    generated = load_generator().render_all()
    committed = {path.name: path.read_text(encoding="utf-8") for path in DASHBOARD_FILES}
    assert committed == generated, "run: make dashboards"
    assert {"talker-overview.json", "talker-gpu.json", "talker-slo.json", "talker-host.json"} <= set(committed)


def test_provisioning_points_at_prometheus_and_alertmanager() -> None:
    uids = provisioned_datasource_uids()
    assert uids == {"prometheus": "prometheus", "alertmanager": "alertmanager"}
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/dashboards.yml").read_text(encoding="utf-8"))
    assert provider["providers"][0]["folder"] == "Talker"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_dashboard_panels_are_complete(path: Path) -> None:
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    prometheus_uid = provisioned_datasource_uids()["prometheus"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["current"]["value"] == prometheus_uid
    assert "instance" in variables

    def resolve(uid: str) -> str:
        return variables["datasource"]["current"]["value"] if uid == "${datasource}" else uid

    panels = list(contract.dashboard_panels(dashboard))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for panel in panels:
        if panel["type"] == "row":
            assert panel["title"] and panel["gridPos"]["w"] == 24, f"{path.name}: row {panel['id']}"
            continue
        where = f"{path.name} panel {panel['id']} {panel['title']!r}"
        assert panel.get("description"), f"{where}: no description"
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{where}: no unit"
        assert resolve(panel["datasource"]["uid"]) == prometheus_uid, where
        assert panel["targets"], f"{where}: no query"
        for target in panel["targets"]:
            assert resolve(target["datasource"]["uid"]) == prometheus_uid, where
            assert target["expr"].strip(), where


def test_dashboard_metric_names_are_defined() -> None:
    assert_metric_names_defined(contract.dashboard_queries())


def test_service_dashboard_has_a_streaming_row() -> None:
    dashboard = json.loads((GRAFANA / "dashboards" / "talker-overview.json").read_text(encoding="utf-8"))
    panels = dashboard["panels"]
    row = next(i for i, p in enumerate(panels) if p["type"] == "row" and "Streaming" in p["title"])
    below = []
    for panel in panels[row + 1:]:
        if panel["type"] == "row":
            break
        below.append(" ".join(t["expr"] for t in panel["targets"]))
    text = "\n".join(below)
    ttfa = "sum by (engine, le) (rate(talker_time_to_first_audio_seconds_bucket"
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}, {ttfa}" in text
    assert "histogram_quantile(0.95, sum by (route, le) (rate(talker_time_to_first_frame_seconds_bucket" in text
    assert "sum by (kind) (talker_streams_active" in text
    assert "sum by (kind, outcome) (rate(talker_streams_ended_total" in text


def test_metric_name_extraction_sees_through_promql_syntax() -> None:
    expr = ('1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle", x=~"a|b"}[5m])) > on () group_left ()'
            ' (14.4 * (1 - talker:slo_availability:objective)) or vector(0) unless up offset 5m')
    assert contract.promql_metric_names(expr) == {"node_cpu_seconds_total", "talker:slo_availability:objective", "up"}


def test_service_dashboard_has_a_conversation_row() -> None:
    # "Which stage is slow": one query splits the p95 by stage, unfiltered, so asr and llm (CHAT_STAGES) sit beside
    # tts, animate and encode (STAGES) as soon as they are observed; the LLM's TTFT, tokens and outcomes follow.
    from talker.engine_contract import CHAT_STAGES, STAGES

    dashboard = json.loads((GRAFANA / "dashboards" / "talker-overview.json").read_text(encoding="utf-8"))
    panels = dashboard["panels"]
    row = next(i for i, p in enumerate(panels) if p["type"] == "row" and "Conversation" in p["title"])
    below = []
    for panel in panels[row + 1:]:
        if panel["type"] == "row":
            break
        below.append(panel)
    text = "\n".join(t["expr"] for panel in below for t in panel["targets"])
    per_stage = 'histogram_quantile(0.95, sum by (stage, le) (rate(talker_stage_duration_seconds_bucket{job="talker"'
    assert sum(per_stage in t["expr"] and t["legendFormat"].startswith("{{stage}}")
               for panel in below for t in panel["targets"]) >= 2  # the side-by-side stat and its trend
    assert "stage=" not in text and set(CHAT_STAGES) | set(STAGES) == {"asr", "llm", "tts", "animate", "encode"}
    for quantile in ("0.5", "0.95"):
        assert f"histogram_quantile({quantile}, sum by (le) (rate(talker_llm_time_to_first_token_seconds_bucket" in text
    assert "sum by (kind) (rate(talker_llm_tokens_total" in text
    assert "sum by (outcome) (rate(talker_llm_requests_total" in text
    assert "instance:talker_llm_requests_failed:ratio_rate5m" in text
    assert "histogram_quantile(0.95, sum by (le) (rate(talker_chat_first_audio_seconds_bucket" in text
    assert "sum(talker_chat_sessions_active" in text
    assert "sum by (input, outcome) (rate(talker_chat_turns_total" in text  # errors by stage: llm_error, ...


def test_service_dashboard_has_an_llm_server_row() -> None:
    # The llm profile's own server (job "llm"): vLLM's and llama.cpp's names as their source defines them at the
    # pinned versions (contract.LLM_SERVER_SERIES), one of each family per panel where both have the figure.
    dashboard = json.loads((GRAFANA / "dashboards" / "talker-overview.json").read_text(encoding="utf-8"))
    panels = dashboard["panels"]
    row = next(i for i, p in enumerate(panels) if p["type"] == "row" and "LLM server" in p["title"])
    exprs = []
    for panel in panels[row + 1:]:
        if panel["type"] == "row":
            break
        exprs += [t["expr"] for t in panel["targets"]]
    names = {name for expr in exprs for name in contract.promql_metric_names(expr)}
    assert names <= contract.LLM_SERVER_SERIES, names - contract.LLM_SERVER_SERIES
    assert {"vllm:generation_tokens_total", "llamacpp:tokens_predicted_total", "vllm:num_requests_waiting",
            "llamacpp:requests_deferred", "vllm:time_to_first_token_seconds_bucket"} <= names
    assert all('{job="llm"}' in expr for expr in exprs), exprs
    # The documented list is an allow-list of exact names, not a prefix: a misspelt upstream name still fails.
    with pytest.raises(AssertionError, match=r"unknown recording rule vllm:generation_tokens$"):
        assert_metric_names_defined([contract.Query("test", "rate(vllm:generation_tokens[5m])")])
