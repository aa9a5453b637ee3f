"""The LLM drill's numbers agree with what they stand for (no processes): the rules, the profiles, the routing,
the histogram and the stand-in. Its run against real processes: test_stack_e2e_local.py; on compose:
test_stack_compose.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from llm_standin.server import LLMStandin
from talker.metrics import LLM_FIRST_TOKEN_BUCKETS

from stack import llm_drill
from stack.config_render import PROFILES, parse_duration

ROOT = Path(__file__).resolve().parents[2]


def rules(name: str) -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load((ROOT / "prometheus/rules" / name).read_text(encoding="utf-8"))["groups"]
    return {rule.get("alert") or rule["record"]: rule for group in groups for rule in group["rules"]}


def test_llm_drill_injects_a_latency_above_the_alerts_threshold_into_one_bucket() -> None:
    alert = rules("alerts.yml")[llm_drill.LLM_ALERT]
    recorded, threshold = re.fullmatch(r"(\S+) > ([\d.]+)", alert["expr"].strip()).groups()  # type: ignore[union-attr]
    window = re.search(r"\[(\w+)\]", rules("recording.yml")[recorded]["expr"]).group(1)  # type: ignore[union-attr]
    assert float(threshold) in LLM_FIRST_TOKEN_BUCKETS  # the p95 crosses it exactly when 5 % of turns are slower
    slow_turn = llm_drill.LLM_DRILL_LATENCY_MS / 1000 + LLMStandin().first_token_delay
    above = min(b for b in LLM_FIRST_TOKEN_BUCKETS if b > float(threshold))
    assert float(threshold) < slow_turn <= above  # (2, 3]: well over 2 s, and not slower than it needs to be
    # The demo and fast profiles fire on the slow turns already in the window; only the default profile's
    # `for` outlives it (then the drill keeps sending slow turns).
    assert llm_drill.WINDOW_HOLDS_S < parse_duration(window) == 300
    for name in ("demo", "fast"):
        profile = PROFILES[name]
        assert profile is not None
        assert min(parse_duration(alert["for"]), profile.for_cap_seconds) <= llm_drill.WINDOW_HOLDS_S, name
    assert parse_duration(alert["for"]) > llm_drill.WINDOW_HOLDS_S
    assert alert["labels"]["severity"] == "warning"


def test_llm_drill_expects_email_exactly_for_the_severities_alertmanager_emails() -> None:
    config = yaml.safe_load((ROOT / "alertmanager/alertmanager.yml").read_text(encoding="utf-8"))
    receivers = {r["name"]: r for r in config["receivers"]}
    emailed = set()
    for route in config["route"]["routes"]:
        for matcher in route.get("matchers", []):
            severity = re.fullmatch(r'severity="(\w+)"', matcher)
            if severity and receivers[route["receiver"]].get("email_configs"):
                emailed.add(severity.group(1))
    assert emailed == set(llm_drill.EMAILED_SEVERITIES) == {"critical"}
