"""Shared helpers of the monitoring tests (importable as monitoring.mon_helpers)."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("promtool", "amtool", "prometheus", "prometheus-alertmanager", "prometheus-node-exporter")


def run_tool(*argv: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, check=False)
