"""The relay's domain: configuration loaded once, one dispatcher per target, the heartbeat monitor (no FastAPI).

The routes in api.py call this and only this; app.py builds it and ties its start and stop to the app's lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import httpx

from dingtalk_relay.auth import AuthFailure, WebhookAuth, WebhookAuthError, load_webhook_auth
from dingtalk_relay.client import DingTalkClient
from dingtalk_relay.delivery import DeliveryPolicy, DeliveryResult, TargetDispatcher
from dingtalk_relay.heartbeat import HeartbeatMonitor, PipelineNotice
from dingtalk_relay.logs import install_redaction
from dingtalk_relay.metrics import RelayMetrics
from dingtalk_relay.models import WebhookPayload
from dingtalk_relay.ratelimit import TokenBucket
from dingtalk_relay.render import MessageRenderer
from dingtalk_relay.settings import RelaySettings
from dingtalk_relay.targets import Target, TargetConfigError, load_targets

log = logging.getLogger(__name__)


class NotConfigured(Exception):
    """The configuration is invalid (or still loading): nothing is accepted. str() says why, never a secret."""


@dataclass
class RelayRuntime:
    settings: RelaySettings
    metrics: RelayMetrics = field(default_factory=RelayMetrics)
    targets: dict[str, Target] = field(default_factory=dict)
    config_error: str | None = None
    renderer: MessageRenderer | None = None
    dispatchers: dict[str, TargetDispatcher] = field(default_factory=dict)
    heartbeat: HeartbeatMonitor | None = None
    auth: WebhookAuth | None = None  # None until loaded: the webhooks refuse everyone
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def load(self) -> None:
        s = self.settings
        try:
            self.auth = load_webhook_auth(s)
            self.renderer = MessageRenderer(
                timezone=s.timezone, max_body_bytes=s.max_body_bytes, templates_dir=s.templates_dir
            )
            self.renderer.check_templates()
            self.targets = load_targets(s)
            if s.heartbeat_target not in self.targets:
                raise TargetConfigError(f"RELAY_HEARTBEAT_TARGET {s.heartbeat_target!r} is not a configured target")
        except Exception as exc:  # any config problem: stay up, not ready, say why (messages hold no secrets)
            known = isinstance(exc, TargetConfigError | WebhookAuthError)
            self.config_error = str(exc) if known else f"{type(exc).__name__}: {exc}"
            self.targets = {}
            log.error("configuration invalid: %s", self.config_error)
            return
        install_redaction(secret for t in self.targets.values() for secret in t.secret_values())
        if self.auth.token is not None:
            install_redaction([self.auth.token.decode("ascii")])
            log.info("webhooks require the bearer token (%s)", "file" if s.webhook_token_file else "env")
        else:
            log.warning("RELAY_ALLOW_UNAUTHENTICATED_WEBHOOKS=true: anyone who can reach the relay can page on-call")
        self.metrics.init_targets(self.targets)
        for t in self.targets.values():
            log.info(
                "target %s: %s, signed=%s, keyword=%s, mentions=%d mobile(s)%s for %s",
                t.name,
                t.api_base,
                t.secret is not None,
                bool(t.keyword),
                len(t.at_mobiles),
                " + all" if t.at_all else "",
                ",".join(sorted(t.mention_severities)),
            )
        if s.rate_limit_burst + s.rate_limit_per_minute > 20:
            log.warning(
                "rate limit %g/min + burst %d can exceed DingTalk's 20 messages/min (then 10 min of errcode 130101)",
                s.rate_limit_per_minute,
                s.rate_limit_burst,
            )

    def start(self, http: httpx.AsyncClient) -> None:
        """Start one dispatcher per target and the heartbeat monitor (nothing when the configuration is invalid)."""
        if self.config_error or self.renderer is None:
            return
        s = self.settings
        client = DingTalkClient(http)
        policy = DeliveryPolicy(s.http_timeout, s.retry_initial_backoff, s.retry_max_backoff)
        buckets: dict[tuple[str, str], TokenBucket] = {}
        for name, target in self.targets.items():
            # Two targets on the same robot share DingTalk's limit, so they share one bucket.
            key = (target.api_base, target.token.get_secret_value())
            bucket = buckets.setdefault(key, TokenBucket(s.rate_limit_per_minute, s.rate_limit_burst))
            self.dispatchers[name] = TargetDispatcher(target, client, self.renderer, bucket, self.metrics, policy)
            self.dispatchers[name].start()
        notice = PipelineNotice(
            target=self.targets[s.heartbeat_target],
            dispatcher=self.dispatchers[s.heartbeat_target],
            renderer=self.renderer,
            timeout=s.heartbeat_timeout,
            deadline_s=s.heartbeat_message_deadline,
        )
        self.heartbeat = HeartbeatMonitor(timeout=s.heartbeat_timeout, send=notice, metrics=self.metrics)
        self.tasks.append(asyncio.create_task(self.heartbeat.run(s.heartbeat_tick), name="heartbeat-monitor"))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.tasks.clear()
        for dispatcher in self.dispatchers.values():
            await dispatcher.stop()

    # -- what the routes ask --------------------------------------------------------------------------------
    def not_ready_reason(self) -> str | None:
        """None when every target has a running dispatcher; else why not."""
        if self.config_error or not self.dispatchers:
            return self.config_error or "starting"
        return None

    def refuse_caller(self, endpoint: str, authorization: str | None) -> AuthFailure | None:
        """None when the caller may use a webhook; else why not (counted). Raises NotConfigured before loading."""
        if self.auth is None:  # configuration invalid: nothing is accepted, from anyone
            raise NotConfigured(self.config_error or "starting")
        failure = self.auth.check(authorization)
        if failure is not None:
            self.metrics.webhook_auth_failures.labels(endpoint, failure).inc()
        return failure

    def dispatcher(self, target: str) -> TargetDispatcher | None:
        """The dispatcher of a configured target (None: no such target). Raises NotConfigured if none can exist."""
        if self.config_error:
            raise NotConfigured(self.config_error)
        return self.dispatchers.get(target)

    async def deliver(self, dispatcher: TargetDispatcher, payload: WebhookPayload) -> DeliveryResult:
        """Count the alerts, then wait until DingTalk took them or the delivery deadline passed."""
        assert self.renderer is not None  # a dispatcher exists only with a loaded configuration
        for alert in payload.alerts:
            self.metrics.alerts.labels(dispatcher.target.name, alert.status).inc()
        return await dispatcher.deliver_alerts(
            self.renderer.views(payload),
            upstream_truncated=payload.truncatedAlerts,
            deadline_s=self.settings.delivery_deadline,
        )

    def heartbeat_monitor(self) -> HeartbeatMonitor:
        if self.heartbeat is None:
            raise NotConfigured(self.config_error or "starting")
        return self.heartbeat
