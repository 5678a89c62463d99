"""Cohort retention: a user counts as retained on day N when active N days after their first day.

Days are the profile's local days (`service.core.calendar`): a user first seen at 23:30 in
Shanghai and back at 00:30 is retained on day 1 there, though both moments share a UTC day.
The cohort is the user's first-seen day, and a late event can move it back. Retention then
has to be judged again against the new first day, from activity already applied. So the
record keeps `days`, a bitmap of the days it was active on, counted from its first-seen day
(bit k: active on day first + k), for the first `span + 1` days only: an activity later than
that can never be day N of any first day, because first days only move back. `retained`
(bit i: day `retention_days[i]` credited) is what was counted, so it can be withdrawn exactly.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from service.core import counters as ctr
from service.core.calendar import Calendar
from service.core.records import UserRecord


@dataclass(frozen=True)
class RetentionRule:
    """The profile's retention days and calendar, prepared once per batch."""

    days: tuple[int, ...]
    span: int  # the latest day offset that can matter (the largest retention day)
    mask: int  # bits 0..span of `days`
    bit_of: dict[int, int]  # day offset -> its bit in `retained`
    calendar: Calendar  # where the days begin

    @classmethod
    def of(cls, retention_days: tuple[int, ...], calendar: Calendar) -> RetentionRule:
        span = max(retention_days, default=0)
        bit_of = {n: 1 << i for i, n in enumerate(retention_days)}
        return cls(tuple(retention_days), span, (1 << (span + 1)) - 1, bit_of, calendar)

    def credited_days(self, retained: int) -> int:
        """The `days` bits that `retained` proves (records written before `days` was kept)."""
        return sum(1 << n for i, n in enumerate(self.days) if retained & (1 << i))

    def retained_of(self, days: int) -> int:
        """The `retained` bits that activity `days` earns."""
        return sum(bit for n, bit in self.bit_of.items() if days >> n & 1)


def note_activity(rec: UserRecord, ts: int, rule: RetentionRule, counts: Counter[str]) -> None:
    """An activity at `ts`: remember its day and credit the retention day it is, once."""
    day = rule.calendar.day
    first_day = day(rec.first_seen)
    offset = day(ts) - first_day
    if not 0 <= offset <= rule.span or rec.days >> offset & 1:
        return
    rec.days |= 1 << offset
    bit = rule.bit_of.get(offset)
    if bit is not None and not rec.retained & bit:
        rec.retained |= bit
        counts[ctr.retained(rec.channel, first_day, offset)] += 1


def move_first_day(rec: UserRecord, new_first: int, rule: RetentionRule, counts: Counter[str]) -> None:
    """The user's first-seen time moves back to `new_first`: move their cohort, withdraw the
    retention counted against the old first day and credit what the same activity earns
    against the new one. The caller sets `rec.first_seen`."""
    day = rule.calendar.day
    old_day, new_day = day(rec.first_seen), day(new_first)
    if old_day == new_day:
        return
    channel = rec.channel
    counts[ctr.cohort(channel, old_day)] -= 1
    counts[ctr.cohort(channel, new_day)] += 1
    for n, bit in rule.bit_of.items():
        if rec.retained & bit:
            counts[ctr.retained(channel, old_day, n)] -= 1
    days = ((rec.days | rule.credited_days(rec.retained)) << (old_day - new_day)) & rule.mask
    rec.days = days
    rec.retained = rule.retained_of(days)
    for n, bit in rule.bit_of.items():
        if rec.retained & bit:
            counts[ctr.retained(channel, new_day, n)] += 1
