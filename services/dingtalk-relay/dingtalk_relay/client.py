"""One POST to a DingTalk robot and what its answer means (ok / retry later / give up)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from dingtalk_relay.errcodes import RETRYABLE_ERRCODES
from dingtalk_relay.signing import robot_send_url
from dingtalk_relay.targets import Target


@dataclass(frozen=True)
class SendOutcome:
    ok: bool
    retryable: bool
    reason: str  # safe for logs and responses: never contains the URL, token or signature
    errcode: int | None = None
    errmsg: str = ""


class DingTalkClient:
    def __init__(self, http: httpx.AsyncClient, *, clock: Callable[[], float] = time.time) -> None:
        self._http = http
        self._clock = clock

    async def send(self, target: Target, body: bytes, *, timeout: float) -> SendOutcome:
        secret = target.secret.get_secret_value() if target.secret else None
        url = robot_send_url(target.api_base, target.token.get_secret_value(), secret, int(self._clock() * 1000))
        try:
            response = await self._http.post(
                url,
                content=body,
                headers={"Content-Type": "application/json; charset=utf-8"},
                timeout=timeout,
            )
        except httpx.TimeoutException:
            return SendOutcome(ok=False, retryable=True, reason="timeout talking to DingTalk")
        except httpx.HTTPError as exc:
            # str(exc) may embed the request URL (token, signature): report the class only.
            return SendOutcome(ok=False, retryable=True, reason=f"network error ({type(exc).__name__})")
        if response.status_code >= 500 or response.status_code == 429:
            return SendOutcome(ok=False, retryable=True, reason=f"DingTalk answered HTTP {response.status_code}")
        if response.status_code != 200:
            return SendOutcome(ok=False, retryable=False, reason=f"DingTalk answered HTTP {response.status_code}")
        try:
            answer = json.loads(response.content)
            errcode = int(answer.get("errcode", -1))
            errmsg = str(answer.get("errmsg", ""))[:200]
        except (ValueError, TypeError, AttributeError):
            # A captive proxy or load balancer page, not DingTalk: likely transient.
            return SendOutcome(ok=False, retryable=True, reason="DingTalk answered a non-JSON body")
        if errcode == 0:
            return SendOutcome(ok=True, retryable=False, reason="ok", errcode=0, errmsg=errmsg)
        return SendOutcome(
            ok=False,
            retryable=errcode in RETRYABLE_ERRCODES,
            reason=f"DingTalk errcode {errcode}: {errmsg}",
            errcode=errcode,
            errmsg=errmsg,
        )
