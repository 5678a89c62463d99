"""The read side of lifecycle per interval: users new, returning, resurrecting and dormant in
each day, week or month of a range, summed over partitions from one HMGET each.

The batch commit keeps one counter per interval, channel and kind in each partition's
`lci` hash (`service.core.interval_lifecycle`), so a range costs one pipelined round trip
whatever the number of users: intervals x 4 fields per partition.
"""

from __future__ import annotations

from typing import Any

from service.core import counters as ctr
from service.core.calendar import Calendar
from service.core.interval_lifecycle import ALL_CHANNELS, KINDS
from service.core.intervals import Granularity, between, first_day
from service.storage.queries import Queries, _stored_channel


async def interval_lifecycle(
    q: Queries, g: Granularity, first: int, last: int, channel: str | None = None
) -> dict[str, Any]:
    """Counts per interval holding a day of local days `[first, last]`, up to the interval of the
    clock's day: later ones have not begun (their dormant users are only the provisional
    count of users active in the current one). Raises `IntervalError` for a bad range."""
    intervals = between(g, first, last)
    now = await q.now_ms()
    cal = q.profile.calendar
    today = cal.day(now)
    starts = [first_day(g, i) for i in intervals if first_day(g, i) <= today]
    stored = _stored_channel(channel) or ALL_CHANNELS
    fields = [ctr.interval_users(g, start, stored, kind) for start in starts for kind in KINDS]
    totals = [0] * len(fields)
    if fields:
        pipe = q.redis.pipeline(transaction=False)
        for k in q.parts:
            pipe.hmget(k.intervals, fields)
        for values in await pipe.execute():
            for n, value in enumerate(values):
                if value is not None:
                    totals[n] += int(value)
    rows = []
    for n, start in enumerate(starts):
        counts = totals[n * len(KINDS) : (n + 1) * len(KINDS)]
        rows.append({"start": Calendar.iso(start), **dict(zip(KINDS, counts, strict=True))})
    return {
        "interval": g,
        "from": Calendar.iso(first),
        "to": Calendar.iso(last),
        "channel": channel,
        "time_zone": cal.name,
        "as_of": now,
        "intervals": rows,
    }
