"""Durations as operators write them (`30d`, `12h`, `90m`, `45s`, `2w`), in milliseconds."""

from __future__ import annotations

import math
import re
from decimal import Decimal

_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")

DAY_MS = _UNIT_MS["d"]


class DurationError(ValueError):
    """A duration string that is not `<number><unit>` with unit ms, s, m, h, d or w."""


def parse_duration(text: str | int | float) -> int:
    """Parse `30d` / `12h` / `1.5h` into milliseconds; bare numbers are already milliseconds."""
    if isinstance(text, bool):
        raise DurationError(f"{text!r} is not a duration; write e.g. '30d' or '12h'")
    if isinstance(text, int | float):
        if isinstance(text, float) and not math.isfinite(text):
            raise DurationError(f"{text!r} is not a finite number of milliseconds")
        if text < 0:
            raise DurationError(f"{text!r} is negative")
        return int(text)
    match = _DURATION.match(text) if isinstance(text, str) else None
    if match is None:
        raise DurationError(f"{text!r} is not a duration; write e.g. '30d', '12h', '90m'")
    # Decimal, not float: '64.1s' is 64100 ms, where float arithmetic gives 64099
    return int(Decimal(match.group(1)) * _UNIT_MS[match.group(2)])


def format_duration(ms: int) -> str:
    """The shortest exact spelling of `ms` in the largest unit that divides it."""
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNIT_MS[unit]
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
