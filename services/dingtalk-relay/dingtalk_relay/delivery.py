"""Per-target delivery: rate limit, merge queued notifications, retry inside the caller's deadline.

Each webhook call becomes a Notification in its target's queue and waits for its outcome. One worker per
target sends messages: when the token bucket is empty, everything that queued meanwhile goes out as ONE
merged message (as many whole notifications as fit untruncated), so a burst is delayed, never dropped.
Retryable failures (network, HTTP 5xx, errcode 130101/-1) put the batch back at the head of the queue after
a backoff; permanent ones (wrong secret, unknown token, ...) fail the callers at once with 502.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dingtalk_relay.client import DingTalkClient, SendOutcome
from dingtalk_relay.errcodes import errcode_label
from dingtalk_relay.metrics import RelayMetrics
from dingtalk_relay.ratelimit import TokenBucket
from dingtalk_relay.render import AlertView, DingTalkMessage, MessageRenderer
from dingtalk_relay.targets import Target

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryResult:
    ok: bool
    status_code: int  # what the webhook caller gets: 200, 502 (permanent) or 503 (try again)
    reason: str
    errcode: int | None = None


@dataclass(eq=False)
class Notification:
    alerts: list[AlertView]
    upstream_truncated: int
    accepted_at: float
    deadline: float
    future: asyncio.Future[DeliveryResult]
    system_message: DingTalkMessage | None = None  # heartbeat messages are sent as they are, never merged
    abandoned: bool = False
    counted_rate_limited: bool = False
    attempts: int = 0
    last_reason: str = ""


@dataclass
class DeliveryPolicy:
    http_timeout: float = 3.0
    retry_initial_backoff: float = 0.25
    retry_max_backoff: float = 2.0

    def backoff(self, attempt: int) -> float:
        return float(min(self.retry_initial_backoff * 2 ** max(attempt - 1, 0), self.retry_max_backoff))


@dataclass
class TargetDispatcher:
    target: Target
    client: DingTalkClient
    renderer: MessageRenderer
    bucket: TokenBucket
    metrics: RelayMetrics
    policy: DeliveryPolicy = field(default_factory=DeliveryPolicy)
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self._pending: list[Notification] = []
        self._in_flight: list[Notification] = []  # the batch _step took out of _pending and is sending
        self._wakeup = asyncio.Event()
        self._not_before = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"dingtalk-dispatch-{self.target.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for notification in self._in_flight + self._pending:
            self._resolve(notification, DeliveryResult(False, 503, "relay shutting down"), outcome="failed")
        self._in_flight = []
        self._pending.clear()

    # -- callers ------------------------------------------------------------------------------------------
    async def deliver_alerts(
        self, alerts: Sequence[AlertView], *, upstream_truncated: int, deadline_s: float
    ) -> DeliveryResult:
        return await self._enqueue(list(alerts), upstream_truncated, None, deadline_s)

    async def deliver_message(self, message: DingTalkMessage, *, deadline_s: float) -> DeliveryResult:
        return await self._enqueue([], 0, message, deadline_s)

    async def _enqueue(
        self, alerts: list[AlertView], upstream_truncated: int, message: DingTalkMessage | None, deadline_s: float
    ) -> DeliveryResult:
        now = self.clock()
        notification = Notification(
            alerts=alerts,
            upstream_truncated=upstream_truncated,
            accepted_at=now,
            deadline=now + deadline_s,
            future=asyncio.get_running_loop().create_future(),
            system_message=message,
        )
        self._pending.append(notification)
        self._wakeup.set()
        try:
            return await asyncio.wait_for(asyncio.shield(notification.future), timeout=deadline_s)
        except TimeoutError:
            if notification.future.done():  # resolved in the same instant the deadline fired
                return notification.future.result()
            if notification in self._in_flight:
                # Already on its way to DingTalk: answering 503 now would make Alertmanager send it again. The
                # send's own timeout (at most max(remaining, 0.5 s)) bounds this wait; a retryable failure past
                # the deadline is answered 503 by _settle, a stop by stop().
                return await notification.future
            notification.abandoned = True
            self.metrics.notifications.labels(self.target.name, "failed").inc()
            why = notification.last_reason or "waiting for the rate limit"
            return DeliveryResult(False, 503, f"not delivered within {deadline_s:g}s ({why})")

    # -- worker -------------------------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._drop_abandoned():
                try:
                    await self._step()
                except asyncio.CancelledError:
                    raise
                except Exception:  # a bug must not kill the target's queue: fail this batch, keep serving
                    log.exception("dispatcher for target %s failed", self.target.name)
                    if self._in_flight:  # the batch being sent (out of _pending already): the rest still go out
                        batch, self._in_flight = self._in_flight, []
                    else:  # it broke before a batch was taken: the queue itself, or this loop would spin on it
                        batch, self._pending = self._pending, []
                    for n in batch:
                        self._resolve(n, DeliveryResult(False, 503, "internal relay error"), outcome="failed")

    def _drop_abandoned(self) -> bool:
        self._pending = [n for n in self._pending if not n.abandoned and not n.future.done()]
        return bool(self._pending)

    async def _step(self) -> None:
        backoff = self._not_before - self.clock()
        if backoff > 0:
            await asyncio.sleep(backoff)
            return
        wait = self.bucket.seconds_until_token()
        if wait > 0:
            for n in self._pending:
                if not n.counted_rate_limited:
                    n.counted_rate_limited = True
                    self.metrics.rate_limited.labels(self.target.name).inc()
            # While we sleep, more notifications queue up: they all go out merged in the next message.
            await asyncio.sleep(wait)
            return
        batch = self._in_flight = self._take_batch()  # DingTalk's answer decides for these, even past a deadline
        self.bucket.try_take()
        message = self._render(batch)
        remaining = max(n.deadline for n in batch) - self.clock()
        outcome = await self.client.send(
            self.target, message.encode(), timeout=max(min(self.policy.http_timeout, remaining), 0.5)
        )
        self._settle(batch, outcome)
        self._in_flight = []

    def _take_batch(self) -> list[Notification]:
        first = self._pending[0]
        batch = [first]
        if first.system_message is None:
            alerts = list(first.alerts)
            truncated = first.upstream_truncated
            for n in self._pending[1:]:
                if n.system_message is not None:
                    break
                if not self._fits(alerts + n.alerts, truncated + n.upstream_truncated):
                    break
                batch.append(n)
                alerts += n.alerts
                truncated += n.upstream_truncated
        self._pending = self._pending[len(batch) :]
        return batch

    def _fits(self, alerts: list[AlertView], upstream_truncated: int) -> bool:
        try:
            return self.renderer.fits_untruncated(self.target, alerts, upstream_truncated)
        except Exception:  # rendering failed: do not merge; _render sends what it can for this batch
            return False

    def _render(self, batch: list[Notification]) -> DingTalkMessage:
        if batch[0].system_message is not None:
            return batch[0].system_message
        alerts = [a for n in batch for a in n.alerts]
        try:
            message = self.renderer.render_alerts(self.target, alerts, sum(n.upstream_truncated for n in batch))
        except Exception:  # a retry renders the same alerts the same way: send a plain message instead of 5xx
            log.exception("target %s: rendering %d alert(s) failed; sending the plain fallback", self.target.name,
                          len(alerts))
            message = self.renderer.render_fallback(self.target, alerts)
        if message.truncated:
            self.metrics.truncated.labels(self.target.name).inc()
        return message

    def _settle(self, batch: list[Notification], outcome: SendOutcome) -> None:
        name = self.target.name
        if outcome.errcode not in (None, 0):
            self.metrics.api_errors.labels(name, errcode_label(outcome.errcode)).inc()
        if outcome.ok:
            alerts = sum(len(n.alerts) for n in batch)
            log.info(
                "target %s: delivered %d alert(s) from %d notification(s) in one message",
                name,
                alerts,
                len(batch),
            )
            for n in batch:
                self.metrics.delivery_duration.labels(name).observe(self.clock() - n.accepted_at)
                self._resolve(n, DeliveryResult(True, 200, "sent", 0), outcome="sent")
            return
        if not outcome.retryable:
            log.warning("target %s: DingTalk refused the message permanently: %s", name, outcome.reason)
            for n in batch:
                self._resolve(n, DeliveryResult(False, 502, outcome.reason, outcome.errcode), outcome="failed")
            return
        self.metrics.notifications.labels(name, "retried").inc()
        attempt = max(n.attempts for n in batch) + 1
        now = self.clock()
        for n in batch:
            n.attempts = attempt
            n.last_reason = outcome.reason
            if now >= n.deadline:  # its caller is waiting past its deadline only for this send's answer
                self._resolve(n, DeliveryResult(False, 503, f"not delivered in time ({outcome.reason})"),
                              outcome="failed")
        log.info("target %s: %s; retry %d", name, outcome.reason, attempt)
        self._pending = [n for n in batch if not n.future.done()] + self._pending
        self._not_before = self.clock() + self.policy.backoff(attempt)

    def _resolve(self, notification: Notification, result: DeliveryResult, *, outcome: str) -> None:
        if notification.future.done() or notification.abandoned:
            return
        notification.future.set_result(result)
        self.metrics.notifications.labels(self.target.name, outcome).inc()
