"""What a user is worth: orders and revenue, high-value users, and the RFM class.

High value is revenue at or above the profile's `rfm.monetary`. Gains are counted in the
month of the order that crossed it; losses (churn) and recalls in the month the state
changed, whenever that change is counted. Months are the profile's local months: they are
made of its local days (`service.core.calendar`).
"""

from __future__ import annotations

from collections import Counter

from service.core import counters as ctr
from service.core.calendar import Calendar
from service.core.profile import Rfm
from service.core.records import UserRecord

_GONE = ("churned", "dead")
_BACK = ("new", "retained")


def count_order(
    rec: UserRecord, amount: float | None, ts: int, rfm: Rfm, calendar: Calendar, counts: Counter[str]
) -> float:
    """An order (or renewal) by an existing user; returns the revenue it adds, for the caller's
    `revenue` sum. Counts: `payers` on the first order, `orders`, and a high-value gain."""
    if not rec.orders:
        counts[ctr.payers(rec.channel)] += 1
    rec.orders += 1
    counts[ctr.orders(rec.channel)] += 1
    if not amount:
        return 0.0
    was_high = rec.revenue >= rfm.monetary
    rec.revenue += amount
    if not was_high and rec.revenue >= rfm.monetary:
        counts[ctr.high_value("gained", month_of(ts, calendar))] += 1
    return amount


def count_high_value(
    counts: Counter[str], rec: UserRecord, a: str, b: str, at: int, rfm: Rfm, calendar: Calendar
) -> None:
    """A state change `a -> b` at `at` of a high-value user: lost to churn, or recalled from it
    (the net new high-value users per month). Counts: `hv|lost` or `hv|recalled`."""
    if rec.revenue < rfm.monetary:
        return
    if b == "churned" and a not in _GONE:
        counts[ctr.high_value("lost", month_of(at, calendar))] += 1
    elif a in _GONE and b in _BACK:
        counts[ctr.high_value("recalled", month_of(at, calendar))] += 1


def rfm_class(rec: UserRecord, rfm: Rfm) -> int:
    """Frequency and monetary score as two bits (2: frequent, 1: high value); recency is read
    from `last_active` at the clock, so it needs no class of its own."""
    return (2 if rec.orders >= rfm.frequency else 0) | (1 if rec.revenue >= rfm.monetary else 0)


def month_of(ts: int, calendar: Calendar) -> str:
    """`YYYY-MM` of the local day of `ts`."""
    return calendar.iso(calendar.day(ts))[:7]
