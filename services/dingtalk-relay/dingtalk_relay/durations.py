"""Durations as Prometheus writes them ("90s", "1h30m", "250ms", "2d") or as plain seconds (30, "30", "1.5").

The one parser of the repository: the relay's settings use it, and so does stack/config_render.py, which runs
in the relay's image (compose's config-init) and in the dev venv. A leaf module: standard library only.
"""

from __future__ import annotations

import math
import re

UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")


class DurationError(ValueError):
    """Not a duration; the message quotes the value (durations are configuration, never secrets)."""


def parse_duration(value: object) -> float:
    """Seconds (0 or more) from 30, "30", "1.5", "30s", "5m", "1h30m", "250ms", "2d", "1w" or "1y"."""
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        try:
            seconds = float(text)
        except ValueError:
            pos, seconds = 0, 0.0
            for match in _PART.finditer(text):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * UNIT_SECONDS[match.group(2)]
                pos = match.end()
            if pos != len(text) or not text:
                raise DurationError(f"not a duration: {value!r} (use e.g. 30s, 5m, 1h or plain seconds)") from None
    if seconds < 0 or not math.isfinite(seconds):
        raise DurationError(f"not a duration: {value!r} (a finite number of seconds, 0 or more)")
    return seconds
