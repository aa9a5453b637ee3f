"""The promtool tests catch a moved threshold: every numeric threshold and burn-rate factor of every alert in
prometheus/rules/*.yml (the hand-written alerts.yml and slo.yml, generated from prometheus/slo/slos.yml) is moved
20 % down and 20 % up (one at a time, in a copy of the rules), and the promtool cases of that alert must then
fail. A test whose quiet case sits far below the threshold and whose
firing case sits far above it lets such a mutant live; prometheus/tests/thresholds_test.yml and
slo_burn_test.yml pin each value just below and just above instead.

Zero thresholds (`> 0`: any failure) and boolean gauges (`== 0`, `== 1`) have nothing to move; their quiet
cases are the zero case itself."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import contract
import pytest
import yaml
from monitoring_tests.mon_helpers import REPO_ROOT, run_tool

UNIT_TEST_DIR = REPO_ROOT / "prometheus" / "tests"
NUMBER = r"\d+(?:\.\d+)?"
# A literal right of a comparison (`> 0.05`, `< 0.10`) or a factor in front of a product (`(14.4 * (1 - ...`).
THRESHOLD_PATTERNS = {
    "threshold": re.compile(rf"(?P<before>[<>]=?\s*)(?P<number>{NUMBER})(?![\w.:])"),
    "factor": re.compile(rf"(?P<before>\(\s*)(?P<number>{NUMBER})(?P<after>\s*\*)"),
}
MOVES = (0.8, 1.25)


@dataclass(frozen=True)
class Mutant:
    rule_index: int  # position among the alert rules of all rule files (in contract.rule_files() order)
    alert: str
    severity: str
    kind: str
    literal: str
    move: float

    @property
    def moved(self) -> str:
        return f"{float(self.literal) * self.move:.6g}"

    def __str__(self) -> str:
        return f"{self.alert}-{self.severity}-{self.kind}-{self.literal}x{self.move}"

    def apply(self, expr: str) -> str:
        pattern = THRESHOLD_PATTERNS[self.kind]

        def replace(match: re.Match[str]) -> str:
            if match.group("number") != self.literal:
                return match.group(0)
            return match.group(0).replace(self.literal, self.moved, 1)

        mutated = pattern.sub(replace, expr)
        assert mutated != expr
        return mutated


def alert_rules() -> list[dict]:
    return [rule for rule in contract.rules() if "alert" in rule]


def mutants() -> list[Mutant]:
    found = []
    for index, rule in enumerate(alert_rules()):
        for kind, pattern in THRESHOLD_PATTERNS.items():
            literals = sorted({m.group("number") for m in pattern.finditer(rule["expr"])})
            for literal in literals:
                if float(literal) == 0:
                    continue
                found.extend(Mutant(index, rule["alert"], rule["labels"]["severity"], kind, literal, move)
                             for move in MOVES)
    return found


def write_mutated_rules(mutant: Mutant | None, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    files, first = [], 0  # first: the index of the file's first alert rule among all alert rules
    for path in contract.rule_files():
        target = directory / path.name
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        rules = [rule for group in document["groups"] for rule in group["rules"] if "alert" in rule]
        if mutant is not None and first <= mutant.rule_index < first + len(rules):
            rule = rules[mutant.rule_index - first]
            assert rule["alert"] == mutant.alert
            rule["expr"] = mutant.apply(rule["expr"])
            target.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
        else:
            shutil.copy(path, target)
        first += len(rules)
        files.append(target)
    return files


def unit_tests_of(alert: str | None, rule_files: list[Path], directory: Path) -> list[Path]:
    """The promtool test files, cut down to the cases that check `alert` (all when None), reading `rule_files`."""
    out = []
    for path in sorted(UNIT_TEST_DIR.glob("*.yml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        tests = [t for t in document["tests"] if alert is None
                 or any(c["alertname"] == alert for c in t.get("alert_rule_test", []))]
        if tests:
            copies = {f.name: f for f in rule_files}  # each test keeps its own rule files, read from the copies
            document.update(tests=tests, rule_files=[str(copies[Path(f).name]) for f in document["rule_files"]])
            target = directory / path.name
            target.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
            out.append(target)
    return out


@pytest.mark.monitoring_lint
def test_every_alert_with_a_threshold_is_mutated() -> None:
    # The patterns must keep seeing the thresholds: an alert rewritten so that they miss it would drop out silently.
    mutated = {m.alert for m in mutants()}
    assert {"TalkerHighErrorRate", "TalkerHighLatency", "TalkerOverloaded", "TalkerSlowSynthesis",
            "TalkerAvailabilityErrorBudgetBurn", "TalkerLatencyErrorBudgetBurn", "TalkerGPUMemoryHigh",
            "TalkerGPUTemperatureHigh", "HostHighCPU", "HostMemoryHigh", "HostDiskSpaceLow", "TalkerSlowFirstAudio",
            "TalkerTTFAErrorBudgetBurn", "TalkerLLMUpstreamFailing", "TalkerLLMSlowFirstToken",
            "TalkerChatLatencyErrorBudgetBurn"} <= mutated
    for slo in ("Availability", "Latency", "TTFA", "ChatLatency"):
        factors = {m.literal for m in mutants() if m.alert == f"Talker{slo}ErrorBudgetBurn"}
        assert factors == {"14.4", "6", "3", "1"}, slo


def test_unmutated_copy_passes(tmp_path: Path) -> None:
    # The cut-down files and copied rules are sound: a mutant fails because of its mutation, not the harness.
    rule_files = write_mutated_rules(None, tmp_path / "rules")
    result = run_tool("promtool", "test", "rules", *unit_tests_of(None, rule_files, tmp_path), timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr


@pytest.mark.parametrize("mutant", mutants(), ids=str)
def test_promtool_cases_catch_a_moved_threshold(mutant: Mutant, tmp_path: Path) -> None:
    rule_files = write_mutated_rules(mutant, tmp_path / "rules")
    test_files = unit_tests_of(mutant.alert, rule_files, tmp_path)
    assert test_files, f"no promtool case checks {mutant.alert}"
    result = run_tool("promtool", "test", "rules", *test_files, timeout=300)
    assert result.returncode != 0, (
        f"{mutant.alert} ({mutant.severity}): {mutant.kind} {mutant.literal} moved to {mutant.moved} and every "
        "promtool case still passes: pin it with a case just below and one just above")
