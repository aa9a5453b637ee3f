"""Token bucket that keeps each robot under DingTalk's 20 messages/minute (over it: 10 minutes of 130101)."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """`capacity` sends at once, refilled at `rate_per_minute`. Not thread-safe: one asyncio loop uses it.

    Any 60 s window holds at most capacity + rate_per_minute sends (`max_in_window`), so the defaults
    (2 + 18) never exceed DingTalk's 20/min, even right after an idle spell filled the bucket.
    """

    def __init__(self, rate_per_minute: float, capacity: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_minute <= 0 or capacity < 1:
            raise ValueError("rate_per_minute must be > 0 and capacity >= 1")
        self.rate_per_second = rate_per_minute / 60.0
        self.capacity = float(capacity)
        self._clock = clock
        self._tokens = float(capacity)
        self._updated = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate_per_second)
        self._updated = now

    def try_take(self) -> bool:
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def seconds_until_token(self) -> float:
        self._refill()
        return 0.0 if self._tokens >= 1.0 else (1.0 - self._tokens) / self.rate_per_second

    def max_in_window(self, window_s: float = 60.0) -> float:
        """Most sends this bucket allows in any window of `window_s` seconds."""
        return self.capacity + self.rate_per_second * window_s
