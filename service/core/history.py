"""Populations over the last days, from end-of-day snapshots.

The indexes answer "how many users are in each state now" exactly, but not "how many
were silent last Tuesday": the past cannot be recomputed from them. So the API keeps,
per day of the clock, the latest counts it saw that day; the last snapshot of a past
day stands for its end-of-day populations. History starts when an API first runs. Days
are the profile's local days, so "the end of Tuesday" is local midnight.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

import orjson

from service.core.calendar import Calendar

MAX_DAYS = 90  # the longest history a request may ask for, and how long snapshots are kept
KEEP_DAYS = MAX_DAYS + 1


def day_of(ms: int, calendar: Calendar) -> str:
    """The clock's local day of an epoch-ms time, as an ISO date: the snapshot's field."""
    return calendar.iso(calendar.day(ms))


def window(today: str, days: int) -> list[str]:
    """The `days` ISO days ending with `today`, oldest first."""
    last = date.fromisoformat(today)
    return [(last - timedelta(days=n)).isoformat() for n in range(days - 1, -1, -1)]


def snapshot(lifecycle: Mapping[str, Any]) -> bytes:
    """What is stored for a day: the counts and total of a `GET /lifecycle` answer."""
    return orjson.dumps(
        {"as_of": lifecycle["as_of"], "total": lifecycle["total"], "counts": lifecycle["counts"]}
    )


def series(
    stored: Mapping[str, bytes | str], today: str, days: int, now: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Days of the window that have a snapshot, oldest first; today is the live answer `now`.

    Days before the first snapshot are absent rather than zero: nothing was recorded.
    """
    out = []
    for day in window(today, days):
        if day == today:
            body: Mapping[str, Any] = now
        else:
            raw = stored.get(day)
            if raw is None:
                continue
            body = orjson.loads(raw)
        out.append({"day": day, "as_of": body["as_of"], "counts": body["counts"], "total": body["total"]})
    return out


def expired(fields: list[str], today: str) -> list[str]:
    """Snapshot days older than what any request may ask for."""
    oldest = window(today, KEEP_DAYS)[0]
    return [f for f in fields if f < oldest]
