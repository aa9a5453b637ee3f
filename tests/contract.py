"""Which metric names the monitoring config refers to, and which names the services define.

The services' `metrics.py` (and talker's `gpu.py`) are the one place metrics are defined; this module
reads names out of those files instead of keeping a third list, and pulls the metric names out of
PromQL in rules and dashboards, so tests can prove every name a panel or alert uses really exists.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = REPO_ROOT / "prometheus" / "rules"
DASHBOARDS_DIR = REPO_ROOT / "grafana" / "dashboards"
# Modules that define metrics, per service. gpu.py holds the NVML/torch collector.
METRIC_MODULES: dict[str, tuple[Path, ...]] = {
    "talker": (
        REPO_ROOT / "services/talker/talker/metrics.py",
        REPO_ROOT / "services/talker/talker/gpu.py",
    ),
    "dingtalk-relay": (REPO_ROOT / "services/dingtalk-relay/dingtalk_relay/metrics.py",),
}
GPU_MODULE = REPO_ROOT / "services/talker/talker/gpu.py"
# The one gpu.py series that exists without a GPU (it says whether the others exist).
GPU_PRESENCE_METRIC = "talker_gpu_available"
# NVIDIA dcgm-exporter's metrics all start with this; that job exists only on GPU hosts (--gpu).
DCGM_PREFIX = "DCGM_"
OWN_PREFIXES = ("talker_", "dingtalk_relay_")


def _histogram(name: str) -> set[str]:
    return {f"{name}_bucket", f"{name}_sum", f"{name}_count"}


# The LLM servers of the compose profile `llm` (job "llm", only scraped with the profile), as their own source
# defines the names at the versions docker-compose*.yml pins — renames have broken other projects' panels, so
# update this list from the source whenever LLM_IMAGE / VLLM_IMAGE move:
# - vLLM v0.10.1.1 (vllm/vllm-openai): vllm/v1/metrics/loggers.py, class PrometheusStatLogger (read at commit
#   005a810bc40f); prometheus_client adds _total to counters. vllm:gpu_cache_usage_perc is deprecated there in
#   favour of vllm:kv_cache_usage_perc, and vllm:time_per_output_token_seconds is renamed later: use neither.
# - llama.cpp server-b6715 (ghcr.io/ggml-org/llama.cpp): tools/server/server.cpp, the /metrics handler (`llamacpp:`
#   prefix, counters already named *_total; read at commit aa6192d38def). Its kv_cache_* gauges are gone from recent
#   builds: not used.
VLLM_SERIES = frozenset({
    "vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
    "vllm:prompt_tokens_total", "vllm:generation_tokens_total", "vllm:request_success_total",
    *_histogram("vllm:time_to_first_token_seconds"), *_histogram("vllm:e2e_request_latency_seconds"),
    *_histogram("vllm:request_queue_time_seconds"),
})
LLAMA_CPP_SERIES = frozenset({
    "llamacpp:prompt_tokens_total", "llamacpp:prompt_seconds_total", "llamacpp:tokens_predicted_total",
    "llamacpp:tokens_predicted_seconds_total", "llamacpp:prompt_tokens_seconds", "llamacpp:predicted_tokens_seconds",
    "llamacpp:requests_processing", "llamacpp:requests_deferred", "llamacpp:n_decode_total",
})
LLM_SERVER_SERIES = VLLM_SERIES | LLAMA_CPP_SERIES


def is_llm_server(name: str) -> bool:
    """A series of the llm profile's upstream server: absent from `make dev` and the default compose stack."""
    return name in LLM_SERVER_SERIES
# Series Prometheus makes itself rather than scraping them.
SYNTHETIC_SERIES = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds", "scrape_samples_scraped"})

_DEFINITION = re.compile(
    r"\b(Counter|Gauge|Histogram|Summary|Info|GaugeMetricFamily|CounterMetricFamily)\(\s*\n?\s*\"([a-zA-Z_:][\w:]*)\""
)
_SERIES_SUFFIXES = {
    "Counter": ("_total", "_created"),
    "CounterMetricFamily": ("_total", "_created"),
    "Histogram": ("_bucket", "_sum", "_count", "_created"),
    "Summary": ("_sum", "_count", "_created"),
    "Info": ("_info",),
}
_KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
     "inf", "nan", "Inf", "NaN", "atan2"}
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MODIFIER_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.$:])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()")


def promql_metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (functions, keywords, labels and durations removed)."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _MODIFIER_LIST.sub(" ", text)
    return {name for name in _IDENTIFIER.findall(text) if name not in _KEYWORDS}


def defined_series(paths: Iterable[Path]) -> set[str]:
    """Series names the metric definitions in these Python files expose (with _total/_bucket/... forms)."""
    names: set[str] = set()
    for path in paths:
        for kind, name in _DEFINITION.findall(path.read_text(encoding="utf-8")):
            suffixes = _SERIES_SUFFIXES.get(kind, ())
            base = name.removesuffix("_total") if kind in ("Counter", "CounterMetricFamily") else name
            names.add(name if not suffixes else base)
            names.update(base + suffix for suffix in suffixes)
    return names


def contract_series() -> set[str]:
    """Every series name the talker and dingtalk-relay define."""
    return defined_series(p for paths in METRIC_MODULES.values() for p in paths)


def gpu_only_series() -> set[str]:
    """talker series that exist only where NVML (or CUDA) works: everything gpu.py defines but the presence flag."""
    return defined_series([GPU_MODULE]) - {GPU_PRESENCE_METRIC}


def is_gpu_only(name: str, gpu_only: set[str]) -> bool:
    return name in gpu_only or name.startswith(DCGM_PREFIX)


@dataclass(frozen=True)
class Query:
    source: str  # "alerts.yml: TalkerDown" or "talker-overview.json: panel 3 'QPS'"
    expr: str

    @property
    def metric_names(self) -> set[str]:
        return promql_metric_names(self.expr)


def rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yml"))


def rules(files: Iterable[Path] | None = None) -> Iterator[dict]:
    for path in files or rule_files():
        for group in yaml.safe_load(path.read_text(encoding="utf-8")).get("groups", []):
            yield from group.get("rules", [])


def rule_queries() -> list[Query]:
    out = []
    for path in rule_files():
        for group in yaml.safe_load(path.read_text(encoding="utf-8")).get("groups", []):
            for rule in group.get("rules", []):
                name = rule.get("alert") or rule.get("record")
                out.append(Query(f"{path.name}: {name}", rule["expr"]))
    return out


def recording_rule_names() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS_DIR.glob("*.json"))


def dashboard_panels(dashboard: dict) -> Iterator[dict]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # collapsed rows keep their panels inside


def dashboard_queries() -> list[Query]:
    out = []
    for path in dashboard_files():
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        for panel in dashboard_panels(dashboard):
            for target in panel.get("targets", []):
                if target.get("expr"):
                    out.append(Query(f"{path.name}: panel {panel['id']} {panel['title']!r}", target["expr"]))
    return out


# Values the cross-check and the lint put in for Grafana variables when running a panel query.
GRAFANA_SUBSTITUTIONS = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "${datasource}": "prometheus",
    "$instance": ".*",
    "$node": ".*",
}


def substitute_grafana_variables(expr: str) -> str:
    for variable, value in sorted(GRAFANA_SUBSTITUTIONS.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(variable, value)
    return expr
