"""The hops of `make smoke`'s drills and their evidence: where each component answers (Endpoints), the clock
that names each hop reached (HopClock, wait_hop), what a failing hop shows (relay, Alertmanager and rule
evidence), the two channels (DingTalk + email, only new messages count) and talker's fault injection on every
replica. Shared by stack.smoke (the synthetic alert, the 5xx drill) and stack.llm_drill (the LLM drill).
Standard library and prometheus_client only, so it runs in the relay image too.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from stack.alertpath import Alertmanager, DingTalkInbox, MailApi, Prometheus
from stack.api_key import ClientKey
from stack.defaults import LISTENERS
from stack.http_client import RequestFailed, get_text, request_json
from stack.procs import poll_until
from stack.prometheus_text import metric_sum, samples


@dataclass
class Endpoints:
    """Where each hop answers: by default `make dev`'s ports on 127.0.0.1 (stack.defaults)."""

    talker: str = LISTENERS["talker"].local_url()
    talker_metrics: str = LISTENERS["talker_metrics"].local_url("/metrics")
    prometheus: str = LISTENERS["prometheus"].local_url()
    alertmanager: str = LISTENERS["alertmanager"].local_url()
    relay: str = LISTENERS["relay"].local_url()
    dingtalk: str = LISTENERS["dingtalk"].local_url()  # "" = real DingTalk: check the relay's sent counter instead
    mailpit: str = LISTENERS["mail_http"].local_url()
    admin_token: str = ""
    api_key: ClientKey = field(default_factory=lambda: ClientKey("", ""))  # talker's /v1 bearer key, if any

    @classmethod
    def compose(cls) -> Endpoints:
        """The same hops by their compose service names (run on the compose networks)."""
        return cls(LISTENERS["talker"].compose_url(), LISTENERS["talker_metrics"].compose_url("/metrics"),
                   LISTENERS["prometheus"].compose_url(), LISTENERS["alertmanager"].compose_url(),
                   LISTENERS["relay"].compose_url(), LISTENERS["dingtalk"].compose_url(),
                   LISTENERS["mail_http"].compose_url())


class SmokeFailure(Exception):
    def __init__(self, hop: str, evidence: str) -> None:
        super().__init__(f"{hop}: {evidence}")
        self.hop = hop
        self.evidence = evidence


@dataclass
class HopClock:
    """Seconds since the start for each hop reached, printed as they come."""

    started: float = field(default_factory=time.monotonic)
    hops: dict[str, float] = field(default_factory=dict)

    def reached(self, hop: str) -> float:
        elapsed = time.monotonic() - self.started
        self.hops[hop] = elapsed
        print(f"  ok  {hop:<46} {elapsed:7.2f} s", flush=True)
        return elapsed


def wait_hop(clock: HopClock, hop: str, check: Any, timeout: float, evidence: Any) -> Any:
    try:
        result = poll_until(check, timeout=timeout, interval=0.25, what=hop)
    except TimeoutError as exc:
        raise SmokeFailure(hop, f"{exc}\n{evidence()}") from None
    clock.reached(hop)
    return result


# -- evidence ---------------------------------------------------------------------------------------
def relay_evidence(ep: Endpoints) -> str:
    try:
        text = get_text(f"{ep.relay}/metrics")
    except RequestFailed as exc:
        return f"relay metrics unavailable: {exc}"
    lines = [f"  notifications {s.labels} = {s.value:g}" for s in samples(text, "dingtalk_relay_notifications_total")]
    lines += [f"  DingTalk errcode {s.labels.get('errcode')} ({s.labels.get('target')}) x{s.value:g}"
              for s in samples(text, "dingtalk_relay_api_errors_total") if s.value]
    lines += [f"  rate limited {s.value:g}" for s in samples(text, "dingtalk_relay_rate_limited_total") if s.value]
    lines += [f"  refused {s.value:g} webhook(s) to /{s.labels.get('endpoint')}: bearer token "
              f"{s.labels.get('reason')} (does Alertmanager's credentials_file hold the relay's "
              "RELAY_WEBHOOK_TOKEN_FILE token?)"
              for s in samples(text, "dingtalk_relay_webhook_auth_failures_total") if s.value]
    return "relay says:\n" + ("\n".join(lines) or "  (no notifications recorded: did Alertmanager call it?)")


def alertmanager_evidence(ep: Endpoints, integration: str) -> str:
    try:
        text = Alertmanager(ep.alertmanager).metrics()
    except RequestFailed as exc:
        return f"Alertmanager metrics unavailable: {exc}"
    sent = metric_sum(text, "alertmanager_notifications_total", integration=integration)
    failed = metric_sum(text, "alertmanager_notifications_failed_total", integration=integration)
    return f"Alertmanager {integration} notifications: {sent:g} attempted, {failed:g} failed" + (
        " (see Alertmanager's log for the SMTP/HTTP error)" if failed else "")


def rule_evidence(ep: Endpoints, alertname: str) -> str:
    prom = Prometheus(ep.prometheus)
    try:
        rule = prom.rule(alertname)
        if rule is None:
            return f"Prometheus has no alerting rule {alertname} (rules not loaded?)"
        values = prom.query(rule["query"])
        shown = ", ".join(f"{r['metric'].get('instance', '')}={r['value'][1]}" for r in values) or "no series"
        health = prom.target_health("talker")
        return (f"rule {alertname} state={rule.get('state')} health={rule.get('health')} "
                f"lastError={rule.get('lastError') or '-'}\n  expr: {rule['query'].strip()}\n"
                f"  current value: {shown}\n  talker scrape targets: {health or 'none'}")
    except (RequestFailed, KeyError) as exc:
        return f"Prometheus unavailable: {exc}"


# -- channels ---------------------------------------------------------------------------------------
class Channels:
    """DingTalk + email, remembering what was there before so only new messages count."""

    def __init__(self, ep: Endpoints) -> None:
        self.ep = ep
        self.mail = MailApi(ep.mailpit)
        self.inbox = DingTalkInbox(ep.dingtalk) if ep.dingtalk else None
        try:
            self.mail_before = self.mail.ids()
        except RequestFailed as exc:
            raise SmokeFailure("email (Mailpit API) reachable", f"{exc} (is the mail sink running?)") from None
        try:
            self.inbox_before = len(self.inbox.messages()) if self.inbox else 0
        except RequestFailed as exc:
            raise SmokeFailure("DingTalk stand-in inbox reachable",
                               f"{exc} (for real DingTalk pass --dingtalk '' / SMOKE_DINGTALK_URL=)") from None
        self.sent_before = self._relay_sent()

    def _relay_sent(self) -> float:
        try:
            return metric_sum(get_text(f"{self.ep.relay}/metrics"), "dingtalk_relay_notifications_total",
                              outcome="sent")
        except RequestFailed:
            return 0.0

    def dingtalk_has(self, *needles: str) -> bool:
        if self.inbox is None:  # real DingTalk: all we can see is the relay's count of accepted sends
            return self._relay_sent() > self.sent_before
        return self.inbox.find(*needles, skip=self.inbox_before) is not None

    def mail_has(self, *needles: str) -> bool:
        return self.mail.find(*needles, exclude=self.mail_before) is not None

    def dingtalk_name(self) -> str:
        return "DingTalk (stand-in inbox)" if self.inbox else "DingTalk (relay sent counter)"


def talker_replicas(url: str) -> list[str]:
    """One base URL per address the talker host name resolves to: with `--scale talker=N` Docker's DNS
    answers `talker` with every replica, and a fault set or cleared on one replica only would not be
    the drill (nor cleared) on the others."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 80
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise SmokeFailure("talker fault injection", f"cannot resolve {host}: {exc}") from None
    addresses = sorted({info[4][0] for info in infos})
    return [urlunsplit(parts._replace(netloc=f"[{a}]:{port}" if ":" in a else f"{a}:{port}")) for a in addresses]


def set_fault(ep: Endpoints, body: dict[str, Any] | None) -> None:
    headers = {"Authorization": f"Bearer {ep.admin_token}"}
    method = "POST" if body is not None else "DELETE"
    for replica in talker_replicas(ep.talker):
        status, answer = request_json(method, f"{replica}/admin/faults", body, headers=headers)
        if status != 200:
            raise SmokeFailure("talker fault injection", f"{method} {replica}/admin/faults -> HTTP {status}: "
                               f"{answer} (is TALKER_ADMIN_TOKEN set on talker and given to the smoke test?)")

