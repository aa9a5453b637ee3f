"""`make smoke`: prove the alert path works, hop by hop, against a running stack (dev or compose).

1. A synthetic critical alert with a unique id goes straight into Alertmanager; it must reach DingTalk
   (the stand-in's inbox, or with real DingTalk the relay's sent counter) and the mailbox (Mailpit API).
2. `--fault`: talker's fault injection makes real traffic fail; TalkerHighErrorRate must fire in Prometheus,
   reach Alertmanager and both channels, then resolve after the fault is cleared.
3. `--fault` also runs the LLM drill (stack.llm_drill; `--no-llm-drill` skips it): chat turns on
   /v1/chat/ws with injected LLM latency; TalkerLLMSlowFirstToken must fire, be delivered and resolve.

Each hop's time is printed; on failure the failing hop and its evidence are, and the exit status is 1.
URLs default to `make dev`'s ports; `--in-compose` uses the compose service names (run it on the compose
network: `make smoke` does that with `docker compose run` when the compose stack is up).
Standard library and prometheus_client only, so it runs in the relay image too.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from stack.alertpath import DINGTALK_RESOLVED_MARK, MAIL_RESOLVED_MARK, Alertmanager, Prometheus
from stack.api_key import ClientKey, client_key
from stack.http_client import RequestFailed, request_json
from stack.llm_drill import llm_alert
from stack.smoke_hops import (
    Channels,
    Endpoints,
    HopClock,
    SmokeFailure,
    alertmanager_evidence,
    relay_evidence,
    rule_evidence,
    set_fault,
    talker_replicas,
    wait_hop,
)

__all__ = ["Endpoints", "SmokeFailure", "Traffic", "fault_alert", "llm_alert", "main", "set_fault",
           "synthetic_alert", "talker_replicas"]

FAULT_ALERT = "TalkerHighErrorRate"


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
    parser.add_argument("--no-llm-drill", action="store_true",
                        help="with --fault: skip the LLM drill (its chat turns spend a paid LLM's tokens)")
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
            if not args.no_llm_drill:
                results["llm"] = llm_alert(ep, args.timeout)
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
