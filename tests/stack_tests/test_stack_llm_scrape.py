"""The llm profile's LLM server is scraped only when the profile is on (stack.config_render --llm)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from monitoring_tests.mon_helpers import run_tool

from stack.config_render import llm_profile_enabled, main, render
from stack.defaults import LISTENERS


def jobs(config_path: Path) -> dict[str, dict[str, Any]]:
    result = run_tool("promtool", "check", "config", "--syntax-only", config_path)
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    return {job["job_name"]: job for job in config["scrape_configs"]}


def test_llm_job_exists_only_with_the_profile(tmp_path: Path) -> None:
    without = jobs(render(tmp_path / "off", env={}).prometheus_config)
    assert "llm" not in without  # no target, so no up{job="llm"} series to alert on
    with_llm = jobs(render(tmp_path / "on", env={}, llm=True).prometheus_config)
    assert with_llm["llm"]["static_configs"] == [{"targets": [LISTENERS["llm_server"].address]}]
    assert with_llm["llm"].get("metrics_path", "/metrics") == "/metrics"
    assert set(with_llm) - set(without) == {"llm"}


@pytest.mark.parametrize(("profiles", "enabled"), [
    ("", False), ("llm", True), ("tools,llm", True), (" llm , tools", True), ("llmx", False), ("tools", False),
])
def test_compose_profiles_turn_the_llm_job_on(profiles: str, enabled: bool) -> None:
    assert llm_profile_enabled(profiles) is enabled


def test_config_init_renders_the_llm_job_from_compose_profiles(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPOSE_PROFILES", "llm")
    assert main(["--out", str(tmp_path / "env")]) == 0
    assert "llm" in jobs(tmp_path / "env/prometheus/prometheus.yml")
    monkeypatch.setenv("COMPOSE_PROFILES", "")
    assert main(["--out", str(tmp_path / "flag"), "--llm"]) == 0
    assert "llm" in jobs(tmp_path / "flag/prometheus/prometheus.yml")
    assert main(["--out", str(tmp_path / "off")]) == 0
    assert "llm" not in jobs(tmp_path / "off/prometheus/prometheus.yml")
