"""Clients for each hop of the alert path: Prometheus → Alertmanager → dingtalk-relay → DingTalk, and email.

Shared by `make smoke`, the end-to-end tests and the time-to-notify benchmark so they all look at the
same evidence. Standard library only (requests through stack.http_client): the smoke test also runs inside
the relay image on the compose network.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from stack.http_client import RequestFailed, get_json, get_text, request_json

DINGTALK_FIRING_MARK = "【告警】"  # relay template: one per firing alert
DINGTALK_RESOLVED_MARK = "【恢复】"
MAIL_RESOLVED_MARK = "【已恢复】"  # Alertmanager email subject of a resolved group


@dataclass
class Prometheus:
    base: str

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"{self.base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        return list(get_json(url)["data"]["result"])

    def alerts(self, alertname: str | None = None, state: str | None = None) -> list[dict[str, Any]]:
        alerts = get_json(f"{self.base}/api/v1/alerts")["data"]["alerts"]
        return [a for a in alerts if (alertname is None or a["labels"].get("alertname") == alertname)
                and (state is None or a["state"] == state)]

    def rule(self, alertname: str) -> dict[str, Any] | None:
        for group in get_json(f"{self.base}/api/v1/rules?type=alert")["data"]["groups"]:
            for rule in group["rules"]:
                if rule.get("name") == alertname:
                    return dict(rule)
        return None

    def target_health(self, job: str) -> list[str]:
        targets = get_json(f"{self.base}/api/v1/targets?state=active")["data"]["activeTargets"]
        return [t["health"] for t in targets if t["labels"].get("job") == job]


@dataclass
class Alertmanager:
    base: str

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        status, body = request_json("POST", f"{self.base}/api/v2/alerts", alerts)
        if status != 200:
            raise RequestFailed(f"Alertmanager refused the alert: HTTP {status}: {str(body)[:300]}")

    def alerts(self, **labels: str) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode([("filter", f'{k}="{v}"') for k, v in labels.items()])
        return list(get_json(f"{self.base}/api/v2/alerts?{query}"))

    def metrics(self) -> str:
        return get_text(f"{self.base}/metrics")


@dataclass
class DingTalkInbox:
    """The DingTalk stand-in's inbox API (GET/DELETE /api/messages)."""

    base: str

    def messages(self) -> list[dict[str, Any]]:
        return list(get_json(f"{self.base}/api/messages"))

    def clear(self) -> None:
        request_json("DELETE", f"{self.base}/api/messages")

    def find(self, *needles: str, skip: int = 0) -> dict[str, Any] | None:
        """First message after the first `skip` whose title+text contains every needle."""
        for message in self.messages()[skip:]:
            text = f"{message.get('title', '')}\n{message.get('text', '')}"
            if all(n in text for n in needles):
                return message
        return None


@dataclass
class MailApi:
    """Mailpit's HTTP API (also served by devtools.mailsink)."""

    base: str

    def summaries(self) -> list[dict[str, Any]]:
        return list(get_json(f"{self.base}/api/v1/messages")["messages"])

    def message(self, message_id: str) -> dict[str, Any]:
        return dict(get_json(f"{self.base}/api/v1/message/{urllib.parse.quote(message_id)}"))

    def ids(self) -> set[str]:
        return {m["ID"] for m in self.summaries()}

    def clear(self) -> None:
        request_json("DELETE", f"{self.base}/api/v1/messages")

    def find(self, *needles: str, exclude: Iterable[str] = ()) -> dict[str, Any] | None:
        """A message (full detail) not in `exclude` whose subject+text contains every needle."""
        skip = set(exclude)
        for summary in self.summaries():
            if summary["ID"] in skip:
                continue
            detail = self.message(summary["ID"])
            text = f"{detail.get('Subject', '')}\n{detail.get('Text', '')}\n{detail.get('HTML', '')}"
            if all(n in text for n in needles):
                return detail
        return None
