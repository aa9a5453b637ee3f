"""Fault injection state: lets a demo or an alert test make the service fail on purpose.

Set through POST/DELETE /admin/faults (only when TALKER_ADMIN_TOKEN is set). TalkerService holds this
state and makes the decisions with it (admit(), the latency inside a slot); nothing here knows about HTTP.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class FaultConfig:
    error_rate: float = 0.0  # fraction of /v1/* requests answered with an injected 500
    extra_latency_ms: float = 0.0  # added inside the synthesis slot, so it also fills the queue
    not_ready: bool = False  # /readyz answers 503 and talker_ready drops to 0

    def active_kinds(self) -> dict[str, bool]:
        return {
            "error_rate": self.error_rate > 0,
            "extra_latency": self.extra_latency_ms > 0,
            "not_ready": self.not_ready,
        }

    def as_dict(self) -> dict[str, float | bool]:
        return asdict(self)


class FaultInjector:
    def __init__(self, rng: random.Random | None = None) -> None:
        self.config = FaultConfig()
        self._rng = rng or random.Random()  # noqa: S311 - chaos sampling, not cryptography

    def set(self, config: FaultConfig) -> None:
        # Replacing a frozen object is atomic, so worker threads never see a half-applied config.
        self.config = config

    def clear(self) -> None:
        self.config = FaultConfig()

    def should_fail(self) -> bool:
        rate = self.config.error_rate
        return rate > 0 and self._rng.random() < rate

    @property
    def extra_latency_s(self) -> float:
        return self.config.extra_latency_ms / 1000.0
