"""Bearer-token check for the webhook endpoints (POST /alertmanager/{target}, POST /heartbeat).

Whoever can call those endpoints can page the on-call group (with @所有人) or keep the dead man's switch
quiet, so they are closed unless a token is configured: RELAY_WEBHOOK_TOKEN or RELAY_WEBHOOK_TOKEN_FILE.
Only RELAY_ALLOW_UNAUTHENTICATED_WEBHOOKS=true (local tinkering) opens them, and the relay says so at start.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dingtalk_relay.settings import RelaySettings

MIN_TOKEN_CHARS = 16
AuthFailure = Literal["missing", "wrong"]
AUTH_FAILURES: tuple[AuthFailure, ...] = ("missing", "wrong")
WEBHOOK_ENDPOINTS = ("alertmanager", "heartbeat")


class WebhookAuthError(ValueError):
    """No usable token configured (the message never contains the token)."""


@dataclass(frozen=True)
class WebhookAuth:
    token: bytes | None  # None: the explicit opt-out, every caller is accepted

    @property
    def enabled(self) -> bool:
        return self.token is not None

    def check(self, authorization: str | None) -> AuthFailure | None:
        """None when the Authorization header carries our token; else why not (missing / wrong)."""
        if self.token is None:
            return None
        scheme, _, presented = (authorization or "").strip().partition(" ")
        presented = presented.strip()
        if scheme.lower() != "bearer" or not presented:
            return "missing"
        # Constant time: the answer must not tell an attacker how many leading bytes were right.
        if not hmac.compare_digest(presented.encode("utf-8", "surrogateescape"), self.token):
            return "wrong"
        return None


def _valid(token: str, source: str) -> str:
    if len(token) < MIN_TOKEN_CHARS:
        raise WebhookAuthError(f"{source} is shorter than {MIN_TOKEN_CHARS} characters: use a random token")
    if not token.isascii() or not token.isprintable() or any(c.isspace() for c in token):
        raise WebhookAuthError(f"{source} must be printable ASCII without spaces (it travels in an HTTP header)")
    return token


def load_webhook_auth(settings: RelaySettings) -> WebhookAuth:
    """The configured token, or the explicit opt-out; anything else (nothing, both, unreadable) is an error."""
    value, file = settings.webhook_token, settings.webhook_token_file
    if value is not None and file is not None:
        raise WebhookAuthError("set RELAY_WEBHOOK_TOKEN or RELAY_WEBHOOK_TOKEN_FILE, not both")
    if file is not None:
        try:
            text = Path(file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise WebhookAuthError(f"cannot read RELAY_WEBHOOK_TOKEN_FILE {file} ({exc.strerror})") from None
        return WebhookAuth(_valid(text, f"RELAY_WEBHOOK_TOKEN_FILE {file}").encode("ascii"))
    if value is not None:
        return WebhookAuth(_valid(value.get_secret_value().strip(), "RELAY_WEBHOOK_TOKEN").encode("ascii"))
    if settings.allow_unauthenticated_webhooks:
        return WebhookAuth(None)
    raise WebhookAuthError(
        "no webhook token: set RELAY_WEBHOOK_TOKEN_FILE (or RELAY_WEBHOOK_TOKEN) to the bearer token Alertmanager "
        "sends; RELAY_ALLOW_UNAUTHENTICATED_WEBHOOKS=true opens the webhooks to anyone (local tinkering only)"
    )
