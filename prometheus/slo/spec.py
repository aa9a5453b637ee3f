"""The SLO spec (prometheus/slo/slos.yml) as typed objects: `load_spec()` reads and validates it.

Its readers: prometheus/slo/generate.py (the recording and alert rules), grafana/build_dashboards.py (the
burn-rate windows) and the tests that check talker's histogram buckets, the dashboards and the runbook against
the objectives and thresholds written here.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SPEC_FILE = Path(__file__).resolve().parent / "slos.yml"
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PLACEHOLDERS = ("${objective}", "${threshold}")


def duration_seconds(duration: str) -> int:
    """Seconds of a one-unit Prometheus duration ("5m", "1d"): the spec writes windows that way."""
    match = _DURATION.match(duration)
    if not match:
        raise ValueError(f"{duration!r} is not a duration like 5m, 1h or 3d")
    return int(match.group(1)) * _SECONDS[match.group(2)]


def promql_number(value: float | Decimal) -> str:
    """A number as Prometheus (Go) prints it: 2, 0.5, 14.4 (never 2.0)."""
    text = format(Decimal(str(value)).normalize(), "f")
    return text


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BurnWindow(_Model):
    """One window pair: both must burn faster than burn_rate x the allowed error ratio."""

    short: str
    long: str
    burn_rate: float = Field(gt=0)

    @field_validator("short", "long")
    @classmethod
    def _is_duration(cls, value: str) -> str:
        duration_seconds(value)
        return value


class AlertLevel(_Model):
    severity: Literal["critical", "warning"]
    for_: str = Field(alias="for")
    windows: tuple[BurnWindow, ...] = Field(min_length=1)


class Alerting(_Model):
    page: AlertLevel
    ticket: AlertLevel


class EventsSLI(_Model):
    """Errors / total of a counter: total = metric{selector}, errors = metric{selector, error_selector}."""

    metric: str
    selector: str = ""
    error_selector: str


class LatencySLI(_Model):
    """Share of a histogram's observations above threshold_seconds (which must be one of its bucket bounds)."""

    histogram: str
    selector: str = ""
    threshold_seconds: float = Field(gt=0)


class SLI(_Model):
    events: EventsSLI | None = None
    latency: LatencySLI | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SLI:
        if (self.events is None) == (self.latency is None):
            raise ValueError("an SLI is either events or latency")
        return self


class AlertText(_Model):
    annotations: dict[str, str]


class SLOAlerting(_Model):
    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    page_alert: AlertText
    ticket_alert: AlertText


class SLO(_Model):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    objective: Decimal = Field(gt=0, lt=100)  # percent, as in Sloth
    description: str
    sli: SLI
    alerting: SLOAlerting

    @property
    def objective_ratio(self) -> Decimal:
        """0.995 for 99.5: what the objective recording rule holds."""
        return (self.objective / 100).normalize()

    @property
    def threshold_seconds(self) -> float | None:
        return self.sli.latency.threshold_seconds if self.sli.latency else None

    @model_validator(mode="after")
    def _placeholders_fit(self) -> SLO:
        for level in (self.alerting.page_alert, self.alerting.ticket_alert):
            for text in level.annotations.values():
                rest = text
                for placeholder in _PLACEHOLDERS:
                    rest = rest.replace(placeholder, "")
                if "${" in rest:
                    raise ValueError(f"{self.name}: unknown placeholder in {text!r} (known: {_PLACEHOLDERS})")
                if "${threshold}" in text and self.sli.latency is None:
                    raise ValueError(f"{self.name}: ${{threshold}} needs a latency SLI")
        return self


class SLOSpec(_Model):
    version: Literal["talker-stack/slo/v1"]
    service: str
    prefix: str
    aggregate_by: tuple[str, ...] = Field(min_length=1)
    budget_period: str
    alerting: Alerting
    slos: tuple[SLO, ...] = Field(min_length=1)

    @field_validator("budget_period")
    @classmethod
    def _is_duration(cls, value: str) -> str:
        duration_seconds(value)
        return value

    @property
    def windows(self) -> list[str]:
        """Every window an alert reads, shortest first: the recorded error ratios (and the dashboard's lines)."""
        found = {w for level in (self.alerting.page, self.alerting.ticket) for pair in level.windows
                 for w in (pair.short, pair.long)}
        return sorted(found, key=duration_seconds)

    def slo(self, name: str) -> SLO:
        return next(slo for slo in self.slos if slo.name == name)


def load_spec(path: Path = SPEC_FILE) -> SLOSpec:
    return SLOSpec.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
