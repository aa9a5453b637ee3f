"""Who may call: the API keys of /v1 and the admin token of /admin, compared in constant time.

Kept apart from the service so the comparisons are small enough to mutation-test (`make mutation`, suite
"talker"). A key is never stored or logged as given: only its SHA-256 digest is kept.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable


class KeyRing:
    """TALKER_API_KEYS: empty = the open demo; otherwise a bearer token must be one of them."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = [hashlib.sha256(key.encode()).digest() for key in keys]

    def __bool__(self) -> bool:
        return bool(self._digests)

    def accepts(self, given: str) -> bool:
        candidate = hashlib.sha256(given.encode()).digest()
        matched = False
        # Every key compared, each in constant time: timing tells nothing about which is close.
        for digest in self._digests:
            matched |= hmac.compare_digest(candidate, digest)
        return matched


def token_matches(given: str, token: str | None) -> bool:
    """The admin token (TALKER_ADMIN_TOKEN(_FILE)): None = fault injection disabled, nothing matches."""
    return token is not None and hmac.compare_digest(given.encode(), token.encode())
