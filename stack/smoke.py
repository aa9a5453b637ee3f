"""`make smoke`: prove the alert path works, hop by hop, against a running stack (dev or compose).

1. A synthetic critical alert with a unique id goes straight into Alertmanager; it must reach DingTalk
   (the stand-in's inbox, or with real DingTalk the relay's sent counter) and the mailbox (Mailpit API).
2. `--fault`: talker's fault injection makes real traffic fail; TalkerHighErrorRate must fire in Prometheus,
   reach Alertmanager and both channels, then resolve after the fault is cleared.

Each hop's time is printed; on failure the failing hop and its evidence are, and the exit status is 1.
URLs default to `make dev`'s ports; `--in-compose` uses the compose service names (run it on the compose
network: `make smoke` does that with `docker compose run` when the compose stack is up).
Standard library and prometheus_client only, so it runs in the relay image too.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from stack.alertpath import (
    DINGTALK_RESOLVED_MARK,
    MAIL_RESOLVED_MARK,
    Alertmanager,
    DingTalkInbox,
    MailApi,
    Prometheus,
)
from stack.api_key import ClientKey, client_key
from stack.defaults import LISTENERS
from stack.http_client import RequestFailed, get_text, request_json
from stack.procs import poll_until
from stack.prometheus_text import metric_sum, samples

FAULT_ALERT = "TalkerHighErrorRate"


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


# -- scenarios --------------------------------------------------------------------------------------
def synthetic_alert(ep: Endpoints, timeout: float) -> dict[str, float]:
    smoke_id = f"smoke-{uuid.uuid4().hex[:10]}"
    print(f"[smoke] synthetic critical alert {smoke_id} -> Alertmanager -> DingTalk + email", flush=True)
    channels = Channels(ep)
    am = Alertmanager(ep.alertmanager)
    now = datetime.now(UTC)
    alert = {
        "labels": {"alertname": "TalkerStackSmokeTest", "severity": "critical", "service": "smoke",
                   "instance": "smoke", "smoke_id": smoke_id},
        "annotations": {"summary": f"告警链路冒烟测试 {smoke_id}",
                        "description": f"make smoke 注入的测试告警 {smoke_id}，可忽略。"},
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(minutes=10)).isoformat(),
    }
    clock = HopClock()
    try:
        am.post_alerts([alert])
    except RequestFailed as exc:
        raise SmokeFailure("Alertmanager accepts the alert", str(exc)) from None
    wait_hop(clock, "Alertmanager has the alert", lambda: am.alerts(smoke_id=smoke_id), 30,
             lambda: "POST /api/v2/alerts answered 200 but the alert is not listed")
    wait_hop(clock, channels.dingtalk_name(), lambda: channels.dingtalk_has(smoke_id), timeout,
             lambda: relay_evidence(ep) + "\n" + alertmanager_evidence(ep, "webhook"))
    wait_hop(clock, "email (Mailpit API)", lambda: channels.mail_has(smoke_id), timeout,
             lambda: alertmanager_evidence(ep, "email"))
    check_relay_closed(ep)
    # Resolve it so the test alert does not stay in Alertmanager (and in everyone's inbox) for 10 minutes.
    am.post_alerts([{**alert, "endsAt": datetime.now(UTC).isoformat()}])
    return clock.hops


def check_relay_closed(ep: Endpoints) -> None:
    """Alertmanager got through with its token; a caller without one must not (nothing open by default)."""
    try:
        status, body = request_json("POST", f"{ep.relay}/heartbeat", {}, timeout=10)
    except RequestFailed as exc:
        raise SmokeFailure("relay refuses webhooks without the bearer token", str(exc)) from None
    if status != 401:
        raise SmokeFailure("relay refuses webhooks without the bearer token",
                           f"POST /heartbeat without a token answered HTTP {status}: {str(body)[:200]} "
                           "(RELAY_ALLOW_UNAUTHENTICATED_WEBHOOKS set?)")
    print("  relay refuses a webhook without the bearer token (401)", flush=True)


class Traffic:
    """Background /v1/tts requests at a steady rate, so error-rate rules have something to measure."""

    def __init__(self, talker: str, rate: float = 4.0, api_key: ClientKey | None = None) -> None:
        self.talker, self.interval = talker, 1.0 / rate
        self.headers = api_key.headers() if api_key is not None else {}
        self.statuses: Counter[int] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="smoke-traffic", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                status, _ = request_json("POST", f"{self.talker}/v1/tts", {"text": "smoke test"},
                                         headers=self.headers, timeout=10)
            except RequestFailed:
                status = 0
            self.statuses[status] += 1
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)


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


def fault_alert(ep: Endpoints, timeout: float) -> dict[str, float]:
    if not ep.admin_token:
        raise SmokeFailure("talker fault injection", "no admin token: set TALKER_ADMIN_TOKEN(_FILE) or --admin-token")
    print(f"[smoke] fault injection: error_rate=0.5 -> {FAULT_ALERT} fires, is delivered, resolves", flush=True)
    if ep.api_key.value:
        print(f"  traffic sends talker's API key from {ep.api_key.source}", flush=True)
    channels = Channels(ep)
    prom, am = Prometheus(ep.prometheus), Alertmanager(ep.alertmanager)
    clock = HopClock()
    with Traffic(ep.talker, api_key=ep.api_key) as traffic:
        set_fault(ep, {"error_rate": 0.5})
        try:
            wait_hop(clock, f"Prometheus: {FAULT_ALERT} firing", lambda: prom.alerts(FAULT_ALERT, "firing"),
                     timeout, lambda: rule_evidence(ep, FAULT_ALERT) + f"\n  traffic so far: {dict(traffic.statuses)}")
            wait_hop(clock, "Alertmanager has it", lambda: am.alerts(alertname=FAULT_ALERT), 60,
                     lambda: "Prometheus fires but Alertmanager lists nothing: check Prometheus' alertmanager "
                             "target (prometheus_notifications_errors_total)")
            wait_hop(clock, channels.dingtalk_name(), lambda: channels.dingtalk_has(FAULT_ALERT), timeout,
                     lambda: relay_evidence(ep) + "\n" + alertmanager_evidence(ep, "webhook"))
            wait_hop(clock, "email (Mailpit API)", lambda: channels.mail_has(FAULT_ALERT), timeout,
                     lambda: alertmanager_evidence(ep, "email"))
        finally:
            set_fault(ep, None)
        print(f"  fault cleared; traffic statuses so far {dict(traffic.statuses)}", flush=True)
        wait_hop(clock, f"DingTalk: {FAULT_ALERT} resolved",
                 lambda: channels.dingtalk_has(DINGTALK_RESOLVED_MARK, FAULT_ALERT) if channels.inbox
                 else not prom.alerts(FAULT_ALERT), timeout,
                 lambda: rule_evidence(ep, FAULT_ALERT) + "\n" + relay_evidence(ep))
        wait_hop(clock, f"email: {FAULT_ALERT} resolved", lambda: channels.mail_has(MAIL_RESOLVED_MARK, FAULT_ALERT),
                 timeout, lambda: alertmanager_evidence(ep, "email"))
    return clock.hops


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, Endpoints]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--in-compose", action="store_true", help="use compose service names as hosts")
    parser.add_argument("--fault", action="store_true", help="also run the fault-injection scenario")
    parser.add_argument("--only-fault", action="store_true", help="skip the synthetic alert")
    parser.add_argument("--timeout", type=float, default=float(os.environ.get("SMOKE_TIMEOUT", "300")),
                        help="seconds to wait for each hop")
    defaults = Endpoints.compose() if "--in-compose" in (argv if argv is not None else sys.argv) else Endpoints()
    for name in ("talker", "talker_metrics", "prometheus", "alertmanager", "relay", "dingtalk", "mailpit"):
        env_value = os.environ.get(f"SMOKE_{name.upper()}_URL")  # set but empty is meaningful (real DingTalk)
        parser.add_argument(f"--{name.replace('_', '-')}", default=getattr(defaults, name) if env_value is None
                            else env_value,
                            help=f"URL (env SMOKE_{name.upper()}_URL); --dingtalk '' for real DingTalk")
    parser.add_argument("--admin-token", default=os.environ.get("TALKER_ADMIN_TOKEN", ""),
                        help="talker's admin token (env TALKER_ADMIN_TOKEN, or the file TALKER_ADMIN_TOKEN_FILE)")
    args = parser.parse_args(argv)
    if not args.admin_token and os.environ.get("TALKER_ADMIN_TOKEN_FILE"):
        token_file = Path(os.environ["TALKER_ADMIN_TOKEN_FILE"])
        try:
            args.admin_token = token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            parser.error(f"cannot read TALKER_ADMIN_TOKEN_FILE {token_file}: {exc.strerror}")
    try:  # talker's /v1 key (TALKER_API_KEY, TALKER_API_KEYS or TALKER_API_KEYS_FILE), when keys are configured
        api_key = client_key()
    except ValueError as exc:
        parser.error(str(exc))
    ep = Endpoints(args.talker, args.talker_metrics, args.prometheus, args.alertmanager, args.relay,
                   args.dingtalk.rstrip("/"), args.mailpit, args.admin_token, api_key)
    return args, ep


def main(argv: list[str] | None = None) -> int:
    args, ep = parse_args(argv)
    results: dict[str, dict[str, float]] = {}
    try:
        if not args.only_fault:
            results["synthetic"] = synthetic_alert(ep, args.timeout)
        if args.fault or args.only_fault:
            results["fault"] = fault_alert(ep, args.timeout)
    except SmokeFailure as failure:
        print(f"\nFAILED at hop: {failure.hop}\n{failure.evidence}", file=sys.stderr, flush=True)
        return 1
    except RequestFailed as exc:
        print(f"\nFAILED: a component did not answer: {exc}", file=sys.stderr, flush=True)
        return 1
    print("[smoke] alert path OK: " + "; ".join(
        f"{name} delivered in {max(hops.values()):.1f} s" for name, hops in results.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
