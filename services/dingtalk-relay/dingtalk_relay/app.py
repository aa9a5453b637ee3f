"""HTTP surface of the relay: thin routes over delivery.py / heartbeat.py (no DingTalk logic here)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import ValidationError

from . import __version__
from .auth import WebhookAuth, WebhookAuthError, load_webhook_auth
from .client import DingTalkClient
from .delivery import DeliveryPolicy, TargetDispatcher
from .heartbeat import HeartbeatMonitor
from .logs import install_redaction, quiet_http_client_logs
from .metrics import RelayMetrics
from .models import WebhookPayload
from .ratelimit import TokenBucket
from .render import MessageRenderer
from .settings import RelaySettings
from .targets import Target, TargetConfigError, load_targets

log = logging.getLogger(__name__)
MAX_PAYLOAD_BYTES = 8 * 1024 * 1024


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

    def start(self, http: httpx.AsyncClient) -> list[asyncio.Task[None]]:
        if self.config_error or self.renderer is None:
            return []
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
        self.heartbeat = HeartbeatMonitor(timeout=s.heartbeat_timeout, send=self._pipeline_notice, metrics=self.metrics)
        return [asyncio.create_task(self.heartbeat.run(s.heartbeat_tick), name="heartbeat-monitor")]

    async def _pipeline_notice(self, broken: bool, last_seen: float | None) -> bool:
        assert self.renderer is not None
        target = self.targets[self.settings.heartbeat_target]
        message = self.renderer.render_heartbeat(
            target, broken=broken, last_seen=last_seen, timeout=self.settings.heartbeat_timeout
        )
        result = await self.dispatchers[target.name].deliver_message(
            message, deadline_s=self.settings.heartbeat_message_deadline
        )
        if not result.ok:
            log.warning("pipeline %s notice not delivered: %s", "broken" if broken else "restored", result.reason)
        return result.ok


def _error(
    status: int, error: str, message: str, headers: dict[str, str] | None = None, **extra: object
) -> JSONResponse:
    return JSONResponse({"error": error, "message": message, **extra}, status_code=status, headers=headers)


def _unauthorized(runtime: RelayRuntime, endpoint: str, request: Request) -> JSONResponse | None:
    """None when the caller may use a webhook endpoint; else the 401/403/503 answer (counted)."""
    if runtime.auth is None:  # configuration invalid: nothing is accepted, from anyone
        return _error(503, "not_configured", runtime.config_error or "starting")
    failure = runtime.auth.check(request.headers.get("authorization"))
    if failure is None:
        return None
    runtime.metrics.webhook_auth_failures.labels(endpoint, failure).inc()
    if failure == "missing":
        return _error(
            401, "unauthorized", "bearer token required (Authorization: Bearer ...)",
            headers={"WWW-Authenticate": 'Bearer realm="dingtalk-relay"'}, field="authorization",
        )
    return _error(403, "forbidden", "wrong bearer token", field="authorization")


async def _parse_payload(request: Request) -> WebhookPayload | JSONResponse:
    too_large = _error(413, "payload_too_large", f"body over {MAX_PAYLOAD_BYTES} bytes", field="body")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_PAYLOAD_BYTES:
        return too_large
    # Count while reading: a client that lies about (or omits) Content-Length must not make us buffer gigabytes.
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_PAYLOAD_BYTES:
            return too_large
        chunks.append(chunk)
    body = b"".join(chunks)
    try:
        return WebhookPayload.model_validate_json(body)
    except ValidationError as exc:
        fields = [
            {"field": ".".join(str(p) for p in err["loc"]) or "body", "message": err["msg"]}
            for err in exc.errors(include_url=False, include_input=False)[:20]
        ]
        first = fields[0]["field"] if fields else "body"
        return _error(422, "invalid_payload", f"not an Alertmanager v4 webhook payload ({first})", fields=fields)


def create_app(settings: RelaySettings | None = None, *, transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    """The relay app; `transport` lets tests route DingTalk calls somewhere without a network."""
    runtime = RelayRuntime(settings or RelaySettings())
    runtime.load()
    quiet_http_client_logs()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(transport=transport, follow_redirects=False) as http:
            tasks = runtime.start(http)
            try:
                yield
            finally:
                for task in tasks:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                for dispatcher in runtime.dispatchers.values():
                    await dispatcher.stop()

    app = FastAPI(title="dingtalk-relay", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.runtime = runtime

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        if runtime.config_error or not runtime.dispatchers:
            return JSONResponse({"status": "not_ready", "reason": runtime.config_error or "starting"}, 503)
        return JSONResponse({"status": "ready", "targets": sorted(runtime.targets)})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(runtime.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/alertmanager/{target}")
    async def alertmanager(target: str, request: Request) -> JSONResponse:
        try:
            if (refused := _unauthorized(runtime, "alertmanager", request)) is not None:
                return refused
            if runtime.config_error:
                return _error(503, "not_configured", runtime.config_error)
            dispatcher = runtime.dispatchers.get(target)
            if dispatcher is None:
                return _error(404, "unknown_target", "no such target; see RELAY_TARGETS_FILE", field="target")
            parsed = await _parse_payload(request)
            if isinstance(parsed, JSONResponse):
                return parsed
            assert runtime.renderer is not None
            for alert in parsed.alerts:
                runtime.metrics.alerts.labels(target, alert.status).inc()
            result = await dispatcher.deliver_alerts(
                runtime.renderer.views(parsed),
                upstream_truncated=parsed.truncatedAlerts,
                deadline_s=runtime.settings.delivery_deadline,
            )
            if result.ok:
                return JSONResponse({"status": "sent", "alerts": len(parsed.alerts)})
            error = "dingtalk_rejected" if result.status_code == 502 else "dingtalk_unavailable"
            extra = {"errcode": result.errcode} if result.errcode is not None else {}
            return _error(result.status_code, error, result.reason, **extra)
        except Exception:  # Alertmanager must get a retryable answer, a client never a traceback
            log.exception("unexpected error handling a webhook for target %s", target[:40])
            return _error(503, "internal_error", "internal relay error; Alertmanager will retry")

    @app.post("/heartbeat")
    async def heartbeat(request: Request) -> JSONResponse:
        try:
            if (refused := _unauthorized(runtime, "heartbeat", request)) is not None:
                return refused
            parsed = await _parse_payload(request)
            if isinstance(parsed, JSONResponse):
                return parsed
            if runtime.heartbeat is None:
                return _error(503, "not_configured", runtime.config_error or "starting")
            if not any(alert.status == "firing" for alert in parsed.alerts):
                # A resolved Watchdog means Prometheus stopped sending it: the opposite of a sign of life.
                return JSONResponse(
                    {"status": "ignored", "reason": "no firing alert", "pipeline_broken": runtime.heartbeat.broken}
                )
            runtime.heartbeat.beat()
            return JSONResponse({"status": "ok", "pipeline_broken": runtime.heartbeat.broken})
        except Exception:
            log.exception("unexpected error handling a heartbeat")
            return _error(503, "internal_error", "internal relay error")

    return app
