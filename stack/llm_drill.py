"""`make smoke FAULT=1`'s LLM drill: the LLM's first token made slow on purpose → TalkerLLMSlowFirstToken is
delivered (a warning: to DingTalk; e-mail only for critical alerts) → the fault cleared, it resolves.

The alert is `instance:talker_llm_time_to_first_token_seconds:p95_rate5m > 2`: the p95 over 5 minutes of
real chat turns. So the drill holds real conversations on /v1/chat/ws (stack.chat_client, with talker's API
key when one is configured), all on one talker replica (the alert is per instance):

1. one turn without a fault: the conversation answers (an LLM is reachable) before anything is blamed on alerting;
2. `llm_extra_latency_ms` on every replica (POST /admin/faults), then slow turns, one at a time, only until
   Prometheus computes the alert's expression as true: one slow turn in the 5-minute window keeps a p95 above
   2 s while it is the slowest 5 % there, so few slow turns go in (a `for:` of more than 4 minutes, the default
   profile's 10m, outlives the window: then slow turns continue until it fires, and resolving waits for the
   window);
3. no chat while the alert travels (Alertmanager, DingTalk, e-mail): the window keeps it firing;
4. the fault cleared, answered turns on two connections until the slow ones are under 5 % of the window and
   Prometheus resolves it, then the resolved notices.

With the fast profile (compose e2e, `make dev` tests) it takes well under a minute; with `demo` the `for: 1m`
and the minute between Alertmanager's group updates dominate. `--no-llm-drill` skips it (against a paid LLM
each turn costs tokens: about 25 of them with the stand-in's replies).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from stack.alertpath import DINGTALK_RESOLVED_MARK, MAIL_RESOLVED_MARK, Alertmanager, Prometheus
from stack.api_key import ClientKey
from stack.chat_client import ChatConnection, ChatError, Turn
from stack.http_client import RequestFailed
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

LLM_ALERT = "TalkerLLMSlowFirstToken"
# Waited before each LLM request: with the LLM's own first token (the stand-in's 0.3 s) the turn lands in
# the histogram's (2, 3] s bucket, above the alert's 2 s.
LLM_DRILL_LATENCY_MS = 2500
# Prometheus evaluates rate(...[5m]): a `for:` up to this long fires on the slow turns already in the window.
WINDOW_HOLDS_S = 240.0
# After a slow turn, how long to give Prometheus (scrape + rule evaluation, demo profile: 5 s + 5 s) to see
# it before another one is sent.
SEEN_WITHIN_S = 20.0
CONNECTIONS = 2
# alertmanager/alertmanager.yml: the severity=critical route (oncall-critical) alone also e-mails; a warning
# (TalkerLLMSlowFirstToken is one) goes to DingTalk only (tests/stack_tests/test_stack_llm_drill.py checks).
EMAILED_SEVERITIES = ("critical",)
PROMPTS = ("How is the weather today?", "What can you do?", "Tell me something short.", "Thank you, goodbye.")


class ChatDriver:
    """Chat turns on one talker replica, counted by outcome. `turn()` runs one now; `running()` keeps
    CONNECTIONS conversations turning back to back in threads until the block ends."""

    def __init__(self, talker: str, api_key: ClientKey, timeout: float = 60.0) -> None:
        self.talker, self.api_key, self.timeout = talker, api_key, timeout
        self.outcomes: Counter[str] = Counter()
        self.last_failure = ""
        self.slowest_ttft = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._prompt = 0

    def _next_prompt(self) -> str:
        with self._lock:
            self._prompt += 1
            return PROMPTS[self._prompt % len(PROMPTS)]

    def _record(self, turn: Turn | None, failure: str = "") -> None:
        with self._lock:
            self.outcomes[turn.outcome if turn is not None else "no answer"] += 1
            if turn is not None and turn.outcome != "completed":
                failure = turn.describe()
            if failure:
                self.last_failure = failure
            if turn is not None:
                self.slowest_ttft = max(self.slowest_ttft, turn.timings.get("llm_ttft", 0.0))

    def turn(self, connection: ChatConnection | None = None) -> Turn | None:
        """One turn (on `connection`, else a new one closed after it); None when the socket failed."""
        try:
            if connection is not None:
                result = connection.turn(self._next_prompt())
            else:
                with ChatConnection.open(self.talker, self.api_key, self.timeout) as fresh:
                    result = fresh.turn(self._next_prompt())
        except ChatError as exc:
            self._record(None, str(exc))
            return None
        self._record(result)
        return result

    def _converse(self) -> None:
        while not self._stop.is_set():
            try:
                with ChatConnection.open(self.talker, self.api_key, self.timeout) as connection:
                    while not self._stop.is_set():
                        turn = self.turn(connection)
                        if turn is None:
                            break
                        if turn.outcome != "completed":  # refused (429) or failed: no tight loop
                            self._stop.wait(0.5)
            except ChatError as exc:
                self._record(None, str(exc))
            self._stop.wait(1.0)  # a refused or broken connection: retry, not in a tight loop

    def running(self) -> _Running:
        return _Running(self)

    def summary(self) -> str:
        with self._lock:
            shown = dict(self.outcomes) or "none"
            last = f"; last failure: {self.last_failure}" if self.last_failure else ""
        return f"chat turns so far {shown}, slowest LLM first token {self.slowest_ttft:.2f} s{last}"


class _Running:
    def __init__(self, driver: ChatDriver) -> None:
        self.driver = driver
        self.threads = [threading.Thread(target=driver._converse, name=f"smoke-chat-{n}", daemon=True)
                        for n in range(CONNECTIONS)]

    def __enter__(self) -> ChatDriver:
        self.driver._stop.clear()
        for thread in self.threads:
            thread.start()
        return self.driver

    def __exit__(self, *exc: object) -> None:
        self.driver._stop.set()
        for thread in self.threads:
            thread.join(timeout=self.driver.timeout + 5)


class SlowTurns:
    """The firing phase's check for wait_hop: True once the alert fires; until then a slow turn whenever
    Prometheus has not seen the last one make the alert's expression true (see the module docstring)."""

    def __init__(self, prom: Prometheus, rule: dict[str, Any], driver: ChatDriver) -> None:
        self.prom, self.query, self.driver = prom, str(rule["query"]), driver
        self.holds = float(rule.get("duration", 0)) <= WINDOW_HOLDS_S
        self.last_turn_ended: float | None = None
        self.sent = 0

    def __call__(self) -> bool:
        if self.prom.alerts(LLM_ALERT, "firing"):
            return True
        expression_true = bool(self.prom.query(self.query))
        waited = time.monotonic() - self.last_turn_ended if self.last_turn_ended is not None else None
        if (expression_true and self.holds) or (waited is not None and waited < SEEN_WITHIN_S and not expression_true):
            return False  # pending on the window's slow turns, or Prometheus has not scraped the last one yet
        self.driver.turn()
        self.sent += 1
        self.last_turn_ended = time.monotonic()
        return False


def llm_alert(ep: Endpoints, timeout: float) -> dict[str, float]:
    if not ep.admin_token:
        raise SmokeFailure("talker fault injection", "no admin token: set TALKER_ADMIN_TOKEN(_FILE) or --admin-token")
    print(f"[smoke] LLM drill: llm_extra_latency_ms={LLM_DRILL_LATENCY_MS} on chat turns -> {LLM_ALERT} fires, "
          "is delivered, resolves", flush=True)
    if ep.api_key.value:
        print(f"  chat turns send talker's API key from {ep.api_key.source}", flush=True)
    channels = Channels(ep)
    prom, am = Prometheus(ep.prometheus), Alertmanager(ep.alertmanager)
    try:
        rule = prom.rule(LLM_ALERT)
    except RequestFailed as exc:
        raise SmokeFailure("Prometheus reachable", str(exc)) from None
    if rule is None:
        raise SmokeFailure(f"Prometheus has the rule {LLM_ALERT}", "not loaded (rules from an older stack?)")
    severity = str(rule.get("labels", {}).get("severity", ""))
    emailed = severity in EMAILED_SEVERITIES
    print(f"  {LLM_ALERT}: for {float(rule.get('duration', 0)):g} s on this Prometheus, severity {severity}: "
          + ("DingTalk and e-mail" if emailed else "DingTalk only (alertmanager.yml e-mails critical alerts alone)"),
          flush=True)
    replica = talker_replicas(ep.talker)[0]
    driver = ChatDriver(replica, ep.api_key)
    clock = HopClock()

    def chat_evidence() -> str:
        return f"  {driver.summary()}"

    def answered() -> bool:
        turn = driver.turn()
        return turn is not None and turn.outcome == "completed"

    wait_hop(clock, "chat turn answered (no fault yet)", answered, 60,
             lambda: chat_evidence() + "\n  (is an LLM answering? TALKER_LLM_BASE_URL, docs/stack.md)")
    slow = SlowTurns(prom, rule, driver)
    set_fault(ep, {"llm_extra_latency_ms": LLM_DRILL_LATENCY_MS})
    try:
        wait_hop(clock, f"Prometheus: {LLM_ALERT} firing", slow, timeout,
                 lambda: rule_evidence(ep, LLM_ALERT) + "\n" + chat_evidence())
        print(f"  {slow.sent} slow turn(s) sent; {driver.summary()}", flush=True)
        wait_hop(clock, "Alertmanager has it", lambda: am.alerts(alertname=LLM_ALERT), 60,
                 lambda: "Prometheus fires but Alertmanager lists nothing: check Prometheus' alertmanager "
                         "target (prometheus_notifications_errors_total)")
        wait_hop(clock, channels.dingtalk_name(), lambda: channels.dingtalk_has(LLM_ALERT), timeout,
                 lambda: relay_evidence(ep) + "\n" + alertmanager_evidence(ep, "webhook"))
        if emailed:
            wait_hop(clock, "email (Mailpit API)", lambda: channels.mail_has(LLM_ALERT), timeout,
                     lambda: alertmanager_evidence(ep, "email"))
    finally:
        set_fault(ep, None)
    print("  fault cleared; answered turns until the slow ones are under 5 % of the window", flush=True)
    with driver.running():
        wait_hop(clock, f"Prometheus: {LLM_ALERT} resolved", lambda: not prom.alerts(LLM_ALERT), timeout,
                 lambda: rule_evidence(ep, LLM_ALERT) + "\n" + chat_evidence())
    print(f"  {driver.summary()}", flush=True)
    if channels.inbox is not None:
        wait_hop(clock, f"DingTalk: {LLM_ALERT} resolved",
                 lambda: channels.dingtalk_has(DINGTALK_RESOLVED_MARK, LLM_ALERT), timeout,
                 lambda: relay_evidence(ep) + "\n" + alertmanager_evidence(ep, "webhook"))
    if emailed:
        wait_hop(clock, f"email: {LLM_ALERT} resolved", lambda: channels.mail_has(MAIL_RESOLVED_MARK, LLM_ALERT),
                 timeout, lambda: alertmanager_evidence(ep, "email"))
    return clock.hops
