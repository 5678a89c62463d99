"""What one user adds to the totals: the population counters they are counted in.

The counts of users, stages, orders, payers, registrations, cohorts and retention, and the
revenue sum, are sums over users of what each one's record says. A user who moves to
another channel takes all of it along, and an erased user takes all of it away; both are
this one enumeration, so neither can forget a counter the other knows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from service.core import counters as ctr
from service.core.calendar import Calendar
from service.core.funnel import REGISTRATION
from service.core.records import UserRecord


def population(
    rec: UserRecord, retention_days: tuple[int, ...], calendar: Calendar
) -> Iterator[tuple[str, int]]:
    """Every population counter `rec` is counted in, with its count: what a user adds to
    the totals (and what moving or erasing them takes away)."""
    channel = rec.channel
    yield ctr.users(channel), 1
    for k in range(rec.stage + 1):
        yield ctr.stage(channel, k), 1
    if rec.orders:
        yield ctr.orders(channel), rec.orders
        yield ctr.payers(channel), 1
    if rec.counts.get(REGISTRATION):
        yield ctr.registered(channel), 1
    day = calendar.day(rec.first_seen)
    yield ctr.cohort(channel, day), 1
    for i, after_days in enumerate(retention_days):
        if rec.retained & (1 << i):
            yield ctr.retained(channel, day, after_days), 1


def add_population(
    rec: UserRecord,
    sign: int,
    retention_days: tuple[int, ...],
    calendar: Calendar,
    counts: Counter[str],
    sums: dict[str, float],
) -> None:
    """Count `rec` in (`sign` 1) or out of (-1) every population count and the revenue sum."""
    for name, n in population(rec, retention_days, calendar):
        counts[name] += sign * n
    if rec.revenue:
        sums[ctr.revenue(rec.channel)] += sign * rec.revenue
