"""Every metric the relay exports (the one place they are defined). One registry per app instance."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from dingtalk_relay.auth import AUTH_FAILURES, WEBHOOK_ENDPOINTS
from dingtalk_relay.errcodes import ERRCODE_LABELS

OUTCOMES = ("sent", "retried", "failed")
ALERT_STATUSES = ("firing", "resolved")
DELIVERY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)


class RelayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # process_* / python_* come from the default collectors; they only read this process's state.
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        r = self.registry
        self.notifications = Counter(
            "dingtalk_relay_notifications_total",
            "Webhook notifications by final outcome (sent/failed); retried counts each retried DingTalk send.",
            ["target", "outcome"],
            registry=r,
        )
        self.alerts = Counter(
            "dingtalk_relay_alerts_total", "Alerts received in accepted webhooks.", ["target", "status"], registry=r
        )
        self.delivery_duration = Histogram(
            "dingtalk_relay_delivery_duration_seconds",
            "Time from accepting a webhook to DingTalk's errcode 0 for it (merging and retries included).",
            ["target"],
            buckets=DELIVERY_BUCKETS,
            registry=r,
        )
        self.api_errors = Counter(
            "dingtalk_relay_api_errors_total",
            "DingTalk answers with a non-zero errcode (known codes by number, the rest as other).",
            ["target", "errcode"],
            registry=r,
        )
        self.truncated = Counter(
            "dingtalk_relay_messages_truncated_total",
            "Messages shortened or with alerts left out to stay under DingTalk's body size limit.",
            ["target"],
            registry=r,
        )
        self.rate_limited = Counter(
            "dingtalk_relay_rate_limited_total",
            "Notifications held back by the relay's own per-robot rate limit (then merged, not dropped).",
            ["target"],
            registry=r,
        )
        self.last_heartbeat = Gauge(
            "dingtalk_relay_last_heartbeat_timestamp_seconds",
            "Unix time of the last Watchdog heartbeat from Alertmanager (0 = none yet).",
            registry=r,
        )
        self.pipeline_broken = Gauge(
            "dingtalk_relay_pipeline_broken",
            "1 while the Watchdog heartbeat is overdue (monitoring pipeline broken), else 0.",
            registry=r,
        )

        self.webhook_auth_failures = Counter(
            "dingtalk_relay_webhook_auth_failures_total",
            "Webhook calls refused for a missing (401) or wrong (403) bearer token, by endpoint.",
            ["endpoint", "reason"],
            registry=r,
        )
        for endpoint in WEBHOOK_ENDPOINTS:
            for reason in AUTH_FAILURES:
                self.webhook_auth_failures.labels(endpoint, reason)

    def init_targets(self, targets: Iterable[str]) -> None:
        """Create every label set at 0 so rate() and absent() behave from the first scrape."""
        for target in targets:
            for outcome in OUTCOMES:
                self.notifications.labels(target, outcome)
            for status in ALERT_STATUSES:
                self.alerts.labels(target, status)
            for code in ERRCODE_LABELS:
                self.api_errors.labels(target, code)
            self.delivery_duration.labels(target)
            self.truncated.labels(target)
            self.rate_limited.labels(target)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
