"""Fault injection state: lets a demo or an alert test make the service fail on purpose.

Set through POST/DELETE /admin/faults (only when TALKER_ADMIN_TOKEN is set). TalkerService holds this
state and makes the decisions with it (admit(), the latency inside a slot); the LLM stage (talker.llm's
LLMClient, handed the same injector) makes the llm_* ones before each request. Nothing here knows about HTTP.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class FaultConfig:
    error_rate: float = 0.0  # fraction of /v1/* requests answered with an injected 500
    extra_latency_ms: float = 0.0  # added inside the synthesis slot, so it also fills the queue
    not_ready: bool = False  # /readyz answers 503 and talker_ready drops to 0
    # The LLM stage: a wait before the request (so before the first token; past TALKER_LLM_TIMEOUT_S it is a
    # timeout), and the fraction of LLM requests answered with an injected upstream error (no request sent).
    llm_extra_latency_ms: float = 0.0
    llm_error_rate: float = 0.0

    def active_kinds(self) -> dict[str, bool]:
        return {
            "error_rate": self.error_rate > 0,
            "extra_latency": self.extra_latency_ms > 0,
            "not_ready": self.not_ready,
            "llm_extra_latency": self.llm_extra_latency_ms > 0,
            "llm_error_rate": self.llm_error_rate > 0,
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

    def should_fail_llm(self) -> bool:
        rate = self.config.llm_error_rate
        return rate > 0 and self._rng.random() < rate

    @property
    def extra_latency_s(self) -> float:
        return self.config.extra_latency_ms / 1000.0

    @property
    def llm_extra_latency_s(self) -> float:
        return self.config.llm_extra_latency_ms / 1000.0
