"""The one place the relay reads its configuration (env vars with the prefix RELAY_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from dingtalk_relay.durations import parse_duration


def positive_duration(value: object) -> float:
    """A duration setting of the relay: parse_duration's syntax, and more than zero."""
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"duration must be positive: {value!r}")
    return seconds


class RelaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RELAY_", extra="ignore", env_ignore_empty=True)

    host: str = "0.0.0.0"  # noqa: S104 - a container service listens on all interfaces
    port: int = 8060
    log_level: str = "INFO"

    # Target "default" from env alone (more targets: targets_file).
    dingtalk_token: SecretStr | None = None
    dingtalk_token_file: Path | None = None
    dingtalk_secret: SecretStr | None = None
    dingtalk_secret_file: Path | None = None
    dingtalk_keyword: str | None = None
    dingtalk_at_mobiles: str = ""  # comma list; a plain string so pydantic-settings does not expect JSON
    dingtalk_at_all: bool = False
    dingtalk_mention_severities: str = "critical"  # comma list
    dingtalk_api_base: str = "https://oapi.dingtalk.com"
    targets_file: Path | None = None

    # Bearer token Alertmanager must send on the webhooks (auth.py). No token = refuse to start, unless the
    # explicit opt-out below is set (local tinkering only: then anyone who can reach the relay can page on-call).
    webhook_token: SecretStr | None = None
    webhook_token_file: Path | None = None
    allow_unauthenticated_webhooks: bool = False

    # Rendering
    timezone: str = "Asia/Shanghai"  # = stack/defaults.py ALERT_TIMEZONE (tests/relay_tests/test_relay_config.py)
    templates_dir: Path | None = None
    # DingTalk rejects bodies over 20000 bytes (460101); stay well below so a proxy's re-encoding still fits.
    max_body_bytes: int = Field(default=19000, ge=2000, le=20000)

    # Delivery: must end before Alertmanager's own notify deadline, max(group_interval, 10s), so the caller
    # sees our 5xx and retries instead of cancelling us mid-flight.
    delivery_deadline: float = 8.0
    http_timeout: float = 3.0
    retry_initial_backoff: float = 0.25
    retry_max_backoff: float = 2.0
    # DingTalk allows 20 messages/min per robot and then throttles for 10 minutes: stay below it.
    rate_limit_per_minute: float = Field(default=18.0, gt=0)
    # burst + rate per minute <= 20 keeps any 60 s window within DingTalk's limit, even after an idle spell.
    rate_limit_burst: int = Field(default=2, ge=1)

    # Dead man's switch fed by Alertmanager's Watchdog.
    heartbeat_timeout: float = 300.0
    heartbeat_target: str = "default"
    heartbeat_check_interval: float | None = None  # default min(timeout/10, 5s)
    heartbeat_message_deadline: float = 60.0

    @field_validator(
        "delivery_deadline",
        "http_timeout",
        "retry_initial_backoff",
        "retry_max_backoff",
        "heartbeat_timeout",
        "heartbeat_check_interval",
        "heartbeat_message_deadline",
        mode="before",
    )
    @classmethod
    def _durations(cls, value: object) -> object:
        return None if value is None or value == "" else positive_duration(value)

    @property
    def heartbeat_tick(self) -> float:
        return self.heartbeat_check_interval or min(self.heartbeat_timeout / 10, 5.0)


def split_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]
