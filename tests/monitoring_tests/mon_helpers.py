"""Shared helpers of the monitoring tests (importable as monitoring.mon_helpers)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path

import contract

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("promtool", "amtool", "prometheus", "prometheus-alertmanager", "prometheus-node-exporter")


def run_tool(*argv: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, check=False)


def assert_metric_names_defined(queries: Iterable[contract.Query]) -> None:
    """Every metric a query names is a recording rule, defined by a service's metrics module, or one of the
    documented upstream LLM server names (contract.LLM_SERVER_SERIES)."""
    defined = contract.contract_series()
    recorded = contract.recording_rule_names()
    for query in queries:
        for name in query.metric_names:
            if contract.is_llm_server(name):
                continue  # an upstream LLM server's name, from its source (contract.LLM_SERVER_SERIES)
            if ":" in name:
                assert name in recorded, f"{query.source}: unknown recording rule {name}"
            elif name.startswith(contract.OWN_PREFIXES):
                assert name in defined, f"{query.source}: {name} is not defined in any service metrics module"
