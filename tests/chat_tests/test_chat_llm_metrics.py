"""The LLM stage's metrics (talker.metrics): fixed label sets, and an exposition promtool accepts."""

from __future__ import annotations

import subprocess

from talker.llm import LLM_FAILURES, LLM_OUTCOMES, LLMOutcome, LLMResult
from talker.metrics import LLM_FIRST_TOKEN_BUCKETS, TalkerMetrics

from stack.prometheus_text import metric_families


def test_llm_metrics_exist_from_the_start_with_fixed_labels_and_pass_promtool() -> None:
    metrics = TalkerMetrics(tts_engine="espeak")
    metrics.observe_llm_result(LLMResult(outcome=LLMOutcome.COMPLETED, time_to_first_token_s=0.42,
                                         prompt_tokens=30, completion_tokens=12))
    metrics.observe_llm_result(LLMResult(outcome=LLMOutcome.STREAM_CUT, time_to_first_token_s=0.3,
                                         completion_tokens=5))
    metrics.observe_llm_result(LLMResult(outcome=LLMOutcome.TIMEOUT))
    text = metrics.exposition().decode()
    families = metric_families(text)
    requests = {s.labels["outcome"]: s.value for s in families["talker_llm_requests"].samples
                if s.name.endswith("_total")}
    assert requests == {o: (1.0 if o in ("completed", "stream_cut", "timeout") else 0.0) for o in LLM_OUTCOMES}
    assert set(LLM_FAILURES) < set(LLM_OUTCOMES) and "cancelled" not in LLM_FAILURES
    tokens = {s.labels["kind"]: s.value for s in families["talker_llm_tokens"].samples if s.name.endswith("_total")}
    assert tokens == {"prompt": 30.0, "completion": 17.0}
    ttft = families["talker_llm_time_to_first_token_seconds"]
    assert ttft.type == "histogram"
    buckets = sorted(float(s.labels["le"]) for s in ttft.samples if s.name.endswith("_bucket"))
    assert buckets[:-1] == list(LLM_FIRST_TOKEN_BUCKETS)
    assert next(s.value for s in ttft.samples if s.name.endswith("_count")) == 2
    result = subprocess.run(["/usr/bin/promtool", "check", "metrics"], input=text.encode(), capture_output=True,
                            timeout=30)
    assert result.returncode == 0, (result.stdout + result.stderr).decode()
