"""DingTalk robot request signing ("加签")."""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import urlencode


def sign_request(secret: str, timestamp_ms: int) -> str:
    """base64(HMAC-SHA256(key=secret, msg="{timestamp}\\n{secret}")), before URL encoding."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def robot_send_url(api_base: str, token: str, secret: str | None, timestamp_ms: int) -> str:
    """Full robot URL; urlencode quotes the signature's + / = exactly as DingTalk expects."""
    query: dict[str, str] = {"access_token": token}
    if secret:
        query["timestamp"] = str(timestamp_ms)
        query["sign"] = sign_request(secret, timestamp_ms)
    return f"{api_base.rstrip('/')}/robot/send?{urlencode(query)}"
