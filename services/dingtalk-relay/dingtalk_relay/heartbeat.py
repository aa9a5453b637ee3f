"""Dead man's switch: Alertmanager's always-firing Watchdog must keep arriving, or we say so in DingTalk.

If the heartbeats stop, nothing in Prometheus/Alertmanager can tell anyone (they are what broke), so the
relay itself sends "监控链路中断" straight to DingTalk, and "监控链路恢复" once heartbeats return.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from dingtalk_relay.delivery import TargetDispatcher
from dingtalk_relay.metrics import RelayMetrics
from dingtalk_relay.render import MessageRenderer
from dingtalk_relay.targets import Target

log = logging.getLogger(__name__)

# send(broken, last_seen_unix) -> delivered?
SendPipelineNotice = Callable[[bool, float | None], Awaitable[bool]]


class HeartbeatMonitor:
    def __init__(
        self,
        *,
        timeout: float,
        send: SendPipelineNotice,
        metrics: RelayMetrics,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.timeout = timeout
        self._send = send
        self._metrics = metrics
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        self._last_beat: float | None = None  # monotonic
        self._last_beat_unix: float | None = None
        self.broken = False
        self._broken_notice_sent = False
        self._recovery_notice_due = False

    def beat(self) -> None:
        self._last_beat = self._monotonic()
        self._last_beat_unix = self._wall_clock()
        self._metrics.last_heartbeat.set(self._last_beat_unix)
        if self.broken:  # restored by the beat itself: the gauge and the beat's answer say so at once
            log.info("Watchdog heartbeat is back: monitoring pipeline restored")
            # A recovery note only makes sense if people were told it broke.
            self.broken, self._recovery_notice_due = False, self._broken_notice_sent
            self._metrics.pipeline_broken.set(0)

    async def check(self) -> None:
        """One tick: detect a state change and (re)try the notice that is owed."""
        if self._last_beat is None:  # armed by the first heartbeat: a fresh stack is not "broken"
            return
        overdue = self._monotonic() - self._last_beat > self.timeout
        if overdue and not self.broken:
            log.warning("no Watchdog heartbeat for %.0fs: monitoring pipeline broken", self.timeout)
            # If the last "restored" never got through, people still believe it is broken: do not say it twice.
            told_broken = self._recovery_notice_due
            self.broken, self._broken_notice_sent, self._recovery_notice_due = True, told_broken, False
            self._metrics.pipeline_broken.set(1)
        if self.broken and not self._broken_notice_sent:
            delivered = await self._send(True, self._last_beat_unix)
            self._broken_notice_sent = delivered
            if delivered and not self.broken:  # a beat restored it while "broken" was on its way: "restored" owed
                self._recovery_notice_due = True
        elif not self.broken and self._recovery_notice_due:
            self._recovery_notice_due = not await self._send(False, self._last_beat_unix)

    async def run(self, tick: float) -> None:
        while True:
            try:
                await self.check()
            except Exception:  # keep watching even if one notice attempt blew up
                log.exception("heartbeat check failed")
            await asyncio.sleep(tick)


@dataclass(frozen=True)
class PipelineNotice:
    """Sends "监控链路中断" / "监控链路恢复" to the heartbeat target (a SendPipelineNotice).

    Through that target's dispatcher, so the notice shares the robot's rate limit and retries with alerts.
    """

    target: Target
    dispatcher: TargetDispatcher
    renderer: MessageRenderer
    timeout: float  # RELAY_HEARTBEAT_TIMEOUT, said in the message
    deadline_s: float  # RELAY_HEARTBEAT_MESSAGE_DEADLINE: one attempt's budget; the next tick tries again

    async def __call__(self, broken: bool, last_seen: float | None) -> bool:
        message = self.renderer.render_heartbeat(self.target, broken=broken, last_seen=last_seen, timeout=self.timeout)
        result = await self.dispatcher.deliver_message(message, deadline_s=self.deadline_s)
        if not result.ok:
            log.warning("pipeline %s notice not delivered: %s", "broken" if broken else "restored", result.reason)
        return result.ok
