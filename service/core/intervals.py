"""Days, weeks and months as numbered intervals of local days (`service.core.calendar`).

An interval is a number per granularity, so "the previous interval" is `i - 1`: a day is its
day number; a week (Monday to Sunday) is counted from the week of 1970-01-01, which was a
Thursday; a month is `year * 12 + month - 1`. Each has a first day and a length in days,
which is all the lifecycle per interval needs to ask "was the user active in it".
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from typing import Literal

Granularity = Literal["day", "week", "month"]
GRANULARITIES: tuple[Granularity, ...] = ("day", "week", "month")

_EPOCH = date(1970, 1, 1).toordinal()
_MONDAY_SHIFT = 3  # 1970-01-01 is a Thursday: day -3 is the Monday that starts week 0


class IntervalError(ValueError):
    """An unknown granularity, or a range of intervals too long or reversed."""


def granularity(name: str) -> Granularity:
    for g in GRANULARITIES:
        if name == g:
            return g
    raise IntervalError(f"interval must be one of day, week, month (got {name!r})")


@lru_cache(maxsize=1 << 16)  # a batch asks about the same few hundred days again and again
def index(g: Granularity, day: int) -> int:
    """The interval of granularity `g` that local `day` falls in."""
    if g == "day":
        return day
    if g == "week":
        return (day + _MONDAY_SHIFT) // 7
    d = date.fromordinal(day + _EPOCH)
    return d.year * 12 + d.month - 1


@lru_cache(maxsize=1 << 16)
def first_day(g: Granularity, i: int) -> int:
    """The first local day of interval `i`."""
    if g == "day":
        return i
    if g == "week":
        return i * 7 - _MONDAY_SHIFT
    return date(i // 12, i % 12 + 1, 1).toordinal() - _EPOCH


def bounds(g: Granularity, i: int) -> tuple[int, int]:
    """The days of interval `i`, as `[first, end)`."""
    return first_day(g, i), first_day(g, i + 1)


MAX_INTERVALS = 400  # a year by day, eight years by week: what one chart can show
MAX_RANGE_DAYS = 3 * 366  # from..to at most about three years, whatever the granularity


def between(g: Granularity, first: int, last: int) -> list[int]:
    """The intervals that hold a day of `[first, last]` (local days), oldest first; the first
    may start before `first`. Refuses ranges that are reversed, longer than `MAX_RANGE_DAYS`
    or of more than `MAX_INTERVALS` intervals, saying which rule was broken."""
    if first > last:
        raise IntervalError("from must be on or before to")
    if last - first + 1 > MAX_RANGE_DAYS:
        raise IntervalError(f"from..to spans {last - first + 1} days; at most {MAX_RANGE_DAYS}")
    lo, hi = index(g, first), index(g, last)
    if hi - lo + 1 > MAX_INTERVALS:
        raise IntervalError(
            f"from..to holds {hi - lo + 1} {g}s; at most {MAX_INTERVALS}: ask by week or month"
        )
    return list(range(lo, hi + 1))
