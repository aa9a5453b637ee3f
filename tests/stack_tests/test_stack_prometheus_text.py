"""stack.prometheus_text: the one reader of /metrics pages, on what prometheus_client and the Go servers write."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from stack.prometheus_text import first_value, metric_families, metric_sum, sample_names, sample_values, samples

# As Prometheus/Alertmanager (Go client) write it: no `_created`, escaped label values, exponent values.
GO_EXPOSITION = r"""# HELP alertmanager_notifications_total The total number of attempted notifications.
# TYPE alertmanager_notifications_total counter
alertmanager_notifications_total{integration="email"} 3
alertmanager_notifications_total{integration="webhook"} 1.5e+01
# HELP prometheus_build_info A metric with a constant '1' value.
# TYPE prometheus_build_info gauge
prometheus_build_info{branch="HEAD",note="say \"hi\"\\ok"} 1
"""


def python_exposition() -> str:
    registry = CollectorRegistry()
    sent = Counter("relay_sent", "sent", ["target", "outcome"], registry=registry)
    sent.labels("default", "sent").inc(2)
    sent.labels("ops", "sent").inc(3)
    sent.labels("default", "failed").inc()
    Gauge("relay_last_heartbeat_timestamp_seconds", "last", registry=registry).set(1.7e9)
    Histogram("relay_delivery_seconds", "delivery", buckets=(0.5, 1.0), registry=registry).observe(0.7)
    return generate_latest(registry).decode()


def test_samples_select_by_name_and_label_subset() -> None:
    text = python_exposition()
    assert metric_sum(text, "relay_sent_total", outcome="sent") == 5
    assert metric_sum(text, "relay_sent_total") == 6
    assert metric_sum(text, "relay_sent_total", outcome="retried") == 0
    assert first_value(text, "relay_sent_total", target="ops") == 3
    assert first_value(text, "relay_missing_total") == 0
    assert [(s.labels, s.value) for s in samples(text, "relay_sent_total", target="default")] == [
        ({"target": "default", "outcome": "sent"}, 2.0), ({"target": "default", "outcome": "failed"}, 1.0)]


def test_names_values_and_families() -> None:
    text = python_exposition()
    names = sample_names(text)
    assert {"relay_sent_total", "relay_delivery_seconds_bucket", "relay_delivery_seconds_count",
            "relay_last_heartbeat_timestamp_seconds"} <= names
    assert "relay_sent" not in names  # a family name, not a sample
    values = sample_values(text)
    assert values[("relay_delivery_seconds_bucket", frozenset({("le", "1.0")}))] == 1
    assert values[("relay_delivery_seconds_bucket", frozenset({("le", "0.5")}))] == 0
    assert metric_families(text)["relay_sent"].type == "counter"


def test_go_servers_expositions() -> None:
    assert metric_sum(GO_EXPOSITION, "alertmanager_notifications_total", integration="webhook") == 15
    assert metric_sum(GO_EXPOSITION, "alertmanager_notifications_total") == 18
    assert samples(GO_EXPOSITION, "prometheus_build_info")[0].labels["note"] == 'say "hi"\\ok'
