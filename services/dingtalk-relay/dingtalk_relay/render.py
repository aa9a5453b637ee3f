"""Alertmanager alerts -> DingTalk markdown message that always fits DingTalk's 20000-byte body limit.

Templates are Jinja2 files (templates/*.md.j2); a file of the same name in RELAY_TEMPLATES_DIR overrides ours.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import jinja2

from dingtalk_relay.markdown import md_text, md_url
from dingtalk_relay.models import WebhookAlert, WebhookPayload
from dingtalk_relay.targets import Target

log = logging.getLogger(__name__)

MAX_TITLE_CHARS = 100
MAX_FIELD_CHARS = 300  # one-line fields (instance, summary, label values): longer ones are noise on a phone
# Once a message must leave alerts out, links longer than this are dropped (half a URL is useless): a huge
# generatorURL, or a silence link over many URL-encoded Chinese label values, must not crowd out whole alerts.
MAX_COMPACT_LINK_CHARS = 500
# Descriptions are shortened step by step before whole alerts are left out.
DESCRIPTION_CAPS: tuple[int | None, ...] = (None, 500, 200, 80, 0)
_SEVERITY_ORDER = {"critical": 0, "error": 1, "warning": 2, "info": 3}
UNRENDERABLE = "-"  # what a field that cannot be shown (an out-of-range time, ...) reads as


@dataclass(frozen=True)
class AlertView:
    """One alert as the templates see it: plain strings, times already in the configured timezone."""

    name: str
    status: str  # firing | resolved
    severity: str
    instance: str
    summary: str
    description: str
    starts_at: str
    ends_at: str | None
    generator_url: str
    silence_url: str
    runbook_url: str

    @property
    def sort_key(self) -> tuple[int, int, str]:
        return (0 if self.status == "firing" else 1, _SEVERITY_ORDER.get(self.severity, 9), self.name)


@dataclass(frozen=True)
class DingTalkMessage:
    title: str
    text: str
    at_mobiles: tuple[str, ...] = ()
    at_all: bool = False
    omitted_alerts: int = 0
    shortened: bool = False

    @property
    def truncated(self) -> bool:
        return self.shortened or self.omitted_alerts > 0

    def body(self) -> dict[str, object]:
        return {
            "msgtype": "markdown",
            "markdown": {"title": self.title, "text": self.text},
            "at": {"atMobiles": list(self.at_mobiles), "isAtAll": self.at_all},
        }

    def encode(self) -> bytes:
        """The exact bytes we POST: UTF-8 without \\u escapes (escaping would double Chinese text's size)."""
        return json.dumps(self.body(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _with_keyword(title: str, target: Target) -> str:
    # DingTalk's keyword check: keep the keyword in the title as well as the text.
    if target.keyword and target.keyword not in title:
        return f"{title} {target.keyword}"
    return title


def _cap(text: str, limit: int | None) -> str:
    if limit is None or len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)] + "…" if limit > 0 else ""


def _compact(alert: AlertView) -> AlertView:
    def link(url: str) -> str:
        return url if len(url) <= MAX_COMPACT_LINK_CHARS else ""

    return replace(
        alert,
        description="",
        summary=_cap(alert.summary, 60),
        generator_url=link(alert.generator_url),
        silence_url=link(alert.silence_url),
        runbook_url=link(alert.runbook_url),
    )


def silence_url(external_url: str, labels: dict[str, str]) -> str:
    """Alertmanager UI link that opens "new silence" pre-filled with this alert's label matchers."""
    base = md_url(external_url)
    if not base:
        return ""
    matchers = ", ".join(
        f'{key}="{value.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for key, value in sorted(labels.items())
    )
    encoded = quote("{" + matchers + "}", safe="", errors="replace")
    return md_url(f"{base.rstrip('/')}/#/silences/new?filter={encoded}")


def format_time(moment: datetime | None, tz: ZoneInfo) -> str | None:
    """The moment in `tz`; None for "no time" (Alertmanager's 0001-01-01); "-" when it cannot be shown."""
    if moment is None or moment.year < 2000:  # Alertmanager sends 0001-01-01 for "no end yet"
        return None
    try:
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z")
    except (OverflowError, ValueError, OSError):  # e.g. 9999-12-31T23:59:59-14:00 is past datetime.max in UTC
        return UNRENDERABLE


def alert_view(alert: WebhookAlert, external_url: str, tz: ZoneInfo) -> AlertView:
    """One alert, every field made safe for markdown (markdown.py); nothing in it can make this raise."""
    try:
        labels, annotations = alert.labels, alert.annotations
        return AlertView(
            # A label that is blank once cleaned (spaces, control characters) is no name: the default stands in.
            name=md_text(labels.get("alertname", ""), 120) or "(无名告警)",
            status=alert.status,
            severity=md_text(labels.get("severity", ""), 40) or "none",
            instance=md_text(labels.get("instance", ""), MAX_FIELD_CHARS)
            or md_text(labels.get("job", ""), MAX_FIELD_CHARS)
            or UNRENDERABLE,
            summary=md_text(annotations.get("summary", ""), MAX_FIELD_CHARS),
            description=md_text(annotations.get("description", "")),
            starts_at=format_time(alert.startsAt, tz) or UNRENDERABLE,
            ends_at=format_time(alert.endsAt, tz) if alert.status == "resolved" else None,
            generator_url=md_url(alert.generatorURL),
            silence_url=silence_url(external_url, labels),
            runbook_url=md_url(annotations.get("runbook_url", "")),
        )
    except Exception:  # a bug here must not block the group: show the alert with what is certain
        log.exception("alert %s could not be rendered; sent with placeholder fields", alert.fingerprint[:32])
        return AlertView(
            name="(无法显示的告警)", status=alert.status, severity=UNRENDERABLE, instance=UNRENDERABLE, summary="",
            description="", starts_at=UNRENDERABLE, ends_at=None, generator_url="", silence_url="", runbook_url="",
        )


def alert_views(payload: WebhookPayload, tz: ZoneInfo) -> list[AlertView]:
    return [alert_view(alert, payload.externalURL, tz) for alert in payload.alerts]


class MessageRenderer:
    def __init__(self, *, timezone: str, max_body_bytes: int, templates_dir: Path | None = None) -> None:
        self.tz = ZoneInfo(timezone)
        self.max_body_bytes = max_body_bytes
        loaders: list[jinja2.BaseLoader] = [jinja2.PackageLoader("dingtalk_relay", "templates")]
        if templates_dir is not None:
            loaders.insert(0, jinja2.FileSystemLoader(str(templates_dir)))
        self._env = jinja2.Environment(  # noqa: S701 - markdown, not HTML: escaping would garble it
            loader=jinja2.ChoiceLoader(loaders),
            trim_blocks=True,
            lstrip_blocks=True,
            undefined=jinja2.StrictUndefined,
        )

    def check_templates(self) -> None:
        for name in ("alerts.md.j2", "heartbeat_broken.md.j2", "heartbeat_recovered.md.j2"):
            self._env.get_template(name)

    def views(self, payload: WebhookPayload) -> list[AlertView]:
        return alert_views(payload, self.tz)

    # -- alerts -------------------------------------------------------------------------------------------
    def render_alerts(
        self, target: Target, alerts: Sequence[AlertView], upstream_truncated: int = 0
    ) -> DingTalkMessage:
        """Whole message if it fits; else shorter descriptions; else as many alerts as fit plus "省略 N 条"."""
        ordered = sorted(alerts, key=lambda a: a.sort_key)
        for cap in DESCRIPTION_CAPS:
            shown = [replace(a, description=_cap(a.description, cap)) for a in ordered]
            changed = cap is not None and any(len(a.description) > cap for a in ordered)
            if cap is not None and not changed:
                continue  # this cap shortens nothing: the message is the one we already measured
            message = self._alerts_message(target, ordered, shown, upstream_truncated, shortened=changed)
            if len(message.encode()) <= self.max_body_bytes:
                return message
        # Even without descriptions it is too big. Make every alert small and bounded first, so that one huge
        # alert cannot push out all those after it; then keep the first k that fit (firing, most severe first).
        shown = [_compact(a) for a in ordered]
        lo, hi = 0, len(shown)
        while lo < hi:  # largest k that fits
            mid = (lo + hi + 1) // 2
            if len(self._alerts_message(target, ordered, shown[:mid], upstream_truncated, True).encode()) <= (
                self.max_body_bytes
            ):
                lo = mid
            else:
                hi = mid - 1
        message = self._alerts_message(target, ordered, shown[:lo], upstream_truncated, True)
        if lo == 0 and len(message.encode()) > self.max_body_bytes:
            # Not even the frame fits (a site template's fixed text, absurd mentions): keep every compacted
            # alert and cut the whole by bytes, so what is cut is the frame's tail, not the alerts.
            message = self._alerts_message(target, ordered, shown, upstream_truncated, True)
        return self._hard_cap(message)

    def fits_untruncated(self, target: Target, alerts: Sequence[AlertView], upstream_truncated: int = 0) -> bool:
        ordered = sorted(alerts, key=lambda a: a.sort_key)
        message = self._alerts_message(target, ordered, ordered, upstream_truncated, shortened=False)
        return len(message.encode()) <= self.max_body_bytes

    def _alerts_message(
        self,
        target: Target,
        all_alerts: Sequence[AlertView],
        shown: Sequence[AlertView],
        upstream_truncated: int,
        shortened: bool,
    ) -> DingTalkMessage:
        firing = sum(1 for a in all_alerts if a.status == "firing")
        resolved = len(all_alerts) - firing
        title = self._title(target, firing, resolved, [a.name for a in all_alerts])
        mention = target.mentions_for({a.severity for a in all_alerts if a.status == "firing"})
        omitted = len(all_alerts) - len(shown)
        message = self._compose(
            target, title, "alerts.md.j2", mention,
            alerts=shown, firing=firing, resolved=resolved, omitted=omitted, upstream_truncated=upstream_truncated,
        )
        return replace(message, omitted_alerts=omitted, shortened=shortened)

    def _compose(self, target: Target, title: str, template: str, mention: bool, **context: Any) -> DingTalkMessage:
        """Render one template into a message; @mentions (text and `at`) only when `mention`."""
        text = self._env.get_template(template).render(
            title=title,
            keyword=target.keyword or "",
            mentions=list(target.at_mobiles) if mention else [],
            at_all=mention and target.at_all,
            **context,
        )
        return DingTalkMessage(
            title=title, text=text, at_mobiles=target.at_mobiles if mention else (), at_all=mention and target.at_all
        )

    @staticmethod
    def _title(target: Target, firing: int, resolved: int, names: Iterable[str]) -> str:
        counts = [f"告警 {firing} 条"] if firing else []
        if resolved:
            counts.append(f"恢复 {resolved} 条")
        distinct = list(dict.fromkeys(names))
        what = distinct[0] if len(distinct) == 1 else f"{distinct[0]} 等 {len(distinct)} 种"
        return _with_keyword(_cap(f"[{' / '.join(counts)}] {what}", MAX_TITLE_CHARS), target)

    def render_fallback(self, target: Target, alerts: Sequence[AlertView]) -> DingTalkMessage:
        """No template, no alert text: what is sent when rendering failed, so that a bug (or a broken custom
        template) costs the details of one message, not the delivery of the whole group."""
        firing = sum(1 for a in alerts if a.status == "firing")
        title = self._title(target, firing, len(alerts) - firing, [a.name for a in alerts] or ["-"])
        severities = {a.severity for a in alerts if a.status == "firing"}
        mention = target.mentions_for(severities)
        lines = [f"#### {title}", "", f"共 {len(alerts)} 条告警，消息内容无法生成，请在 Alertmanager 查看详情。", ""]
        if target.keyword:
            lines += [f"> {target.keyword}", ""]
        if mention:
            lines.append(" ".join([*(f"@{m}" for m in target.at_mobiles), *(["@所有人"] if target.at_all else [])]))
        message = DingTalkMessage(
            title=title, text="\n".join(lines), at_mobiles=target.at_mobiles if mention else (),
            at_all=mention and target.at_all, shortened=True,
        )
        return self._hard_cap(message)

    def _hard_cap(self, message: DingTalkMessage) -> DingTalkMessage:
        """Last resort (a site template with a huge fixed part, absurd mentions): the longest prefix of the
        text that fits, by bytes as sent. If title, keyword and mentions alone are too big it cannot fit:
        DingTalk will say 460101 (permanent, 502) rather than the relay retrying forever."""
        if len(message.encode()) <= self.max_body_bytes:
            return message

        def cut(chars: int) -> DingTalkMessage:
            return replace(message, text=message.text[:chars] + "\n\n…(消息过长，已截断)", shortened=True)

        lo, hi = 0, len(message.text)
        while lo < hi:  # largest prefix that fits (bytes per character vary: measure, do not estimate)
            mid = (lo + hi + 1) // 2
            if len(cut(mid).encode()) <= self.max_body_bytes:
                lo = mid
            else:
                hi = mid - 1
        return cut(lo)

    # -- dead man's switch --------------------------------------------------------------------------------
    def render_heartbeat(
        self, target: Target, *, broken: bool, last_seen: float | None, timeout: float
    ) -> DingTalkMessage:
        last = datetime.fromtimestamp(last_seen, tz=self.tz).strftime("%Y-%m-%d %H:%M:%S %Z") if last_seen else "-"
        title = _with_keyword(
            "监控链路中断 / monitoring pipeline broken" if broken else "监控链路恢复 / monitoring pipeline restored",
            target,
        )
        mention = broken and target.mentions_for({"critical"})
        template = "heartbeat_broken.md.j2" if broken else "heartbeat_recovered.md.j2"
        return self._compose(target, title, template, mention, last_seen=last, timeout_seconds=int(timeout))
