"""Lifecycle per interval (PostHog's and Amplitude's view), kept exact by counter differences.

A user is active in an interval (a day, a Monday week or a month of the profile's calendar)
when it had an activity event in it. Per interval J a user is
*new* (its first active interval is J), *returning* (active in J and J-1), *resurrecting*
(active in J, not in J-1, active before) or *dormant* (active in J-1, not in J).

The class of J depends only on active(J), active(J-1) and whether the first activity is
before J. So a newly active day d, however late it arrives, can change the class of three
intervals only: I(d), I(d)+1 and the user's old first interval (when d is earlier). The
batch computes the user's class of each before and after and adds the differences to the
`lci|...` counters (`service.core.counters.interval_users`), per channel and for all
channels (`*`): summed over any batches in any order, the counters equal the
classification of every user's final set of active days.

The set is `UserRecord.active_days`, bit k meaning "active on local day base + k" where
base is the local day of `first_seen` (which only moves back; the bits move with it).
Records written before it was kept have none: their next activity counts as their first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from service.core import counters as ctr
from service.core.calendar import Calendar
from service.core.daysets import days_of
from service.core.intervals import GRANULARITIES, Granularity, bounds, first_day, index
from service.core.records import UserRecord

KINDS = ("new", "returning", "resurrecting", "dormant")
ALL_CHANNELS = "*"  # the counters summed over channels, so a read does not depend on their number


# A new active day later than all of a user's others, as a batch gathers them before counting
# (`note_active_day`'s `latest`): (day, channel, and per granularity how the day's interval
# follows the user's previous active day's) -> users. Users of one day and channel mostly
# share a key, so a batch formats and counts each interval counter once, not per user.
Latest = Counter[tuple[int, str, int, int, int]]
FIRST, SAME, NEXT, GAP = 0, 1, 2, 3  # no previous active day; the same interval; the next; later


def note_active_day(rec: UserRecord, ts: int, cal: Calendar, counts: Counter[str], latest: Latest) -> None:
    """An activity at `ts` (not before `rec.first_seen`): add its day and, when the day is new,
    the class changes it causes (for the common new latest day, into `latest`, which
    `add_latest` counts). Nothing when the day is already in the set (most events)."""
    base = cal.day(rec.first_seen)
    offset = cal.day(ts) - base
    old = rec.active_days
    if old >> offset & 1:
        return
    rec.active_days = old | 1 << offset
    day = base + offset
    channel = rec.channel
    if offset >= old.bit_length():  # after every day so far: the common case, worked out directly
        latest[latest_key(day, base + old.bit_length() - 1 if old else None, channel)] += 1
        return
    first = base + _lowest(old) if old else None
    for g in GRANULARITIES:
        i = index(g, day)
        if old and g != "day" and _active(old, base, g, i):  # (a new day is a new day interval)
            continue  # the interval was active already, and the first one cannot have moved
        f_old = None if first is None else index(g, first)
        f_new = i if f_old is None or i < f_old else f_old
        targets = (i, i + 1) if f_old is None or f_old <= i + 1 else (i, i + 1, f_old)
        # whether each interval near the targets was active before: each asked once; after,
        # the same but interval i (which was not)
        was: dict[int, bool] = {i: False}
        for j in targets:
            for x in (j, j - 1):
                if x not in was:
                    was[x] = _active(old, base, g, x)
        for j in targets:
            before = _kind(was[j], was[j - 1], j, f_old)
            after = _kind(was[j] or j == i, was[j - 1] or j - 1 == i, j, f_new)
            if before != after:
                start = first_day(g, j)
                if before is not None:
                    counts[ctr.interval_users(g, start, channel, before)] -= 1
                    counts[ctr.interval_users(g, start, ALL_CHANNELS, before)] -= 1
                if after is not None:
                    counts[ctr.interval_users(g, start, channel, after)] += 1
                    counts[ctr.interval_users(g, start, ALL_CHANNELS, after)] += 1


def latest_key(day: int, last: int | None, channel: str) -> tuple[int, str, int, int, int]:
    """The `Latest` key of a new active `day` after the user's `last` one (None: its first)."""
    if last is None:
        return day, channel, FIRST, FIRST, FIRST
    week, last_week = index("week", day), index("week", last)
    month, last_month = index("month", day), index("month", last)
    return (
        day,
        channel,
        NEXT if last == day - 1 else GAP,
        SAME if week == last_week else NEXT if week == last_week + 1 else GAP,
        SAME if month == last_month else NEXT if month == last_month + 1 else GAP,
    )


def add_latest(latest: Mapping[tuple[int, str, int, int, int], int], counts: Counter[str]) -> None:
    """Count gathered new latest days: per granularity, the day's interval i becomes new (the
    user's first), returning (after an active i - 1: it was dormant) or resurrecting, and i + 1
    becomes dormant; an interval already active (SAME) changes nothing."""
    for (day, channel, *relations), n in latest.items():
        for g, relation in zip(GRANULARITIES, relations, strict=True):
            if relation == SAME:
                continue
            i = index(g, day)
            start, end = first_day(g, i), first_day(g, i + 1)
            if relation == NEXT:
                counts[ctr.interval_users(g, start, channel, "dormant")] -= n
                counts[ctr.interval_users(g, start, ALL_CHANNELS, "dormant")] -= n
            kind = "new" if relation == FIRST else "returning" if relation == NEXT else "resurrecting"
            counts[ctr.interval_users(g, start, channel, kind)] += n
            counts[ctr.interval_users(g, start, ALL_CHANNELS, kind)] += n
            counts[ctr.interval_users(g, end, channel, "dormant")] += n
            counts[ctr.interval_users(g, end, ALL_CHANNELS, "dormant")] += n


def move_base(rec: UserRecord, new_first_seen: int, cal: Calendar) -> None:
    """`first_seen` moves back to `new_first_seen`: keep the bits on the same days. The caller
    sets `rec.first_seen` afterwards."""
    if rec.active_days:
        rec.active_days <<= cal.day(rec.first_seen) - cal.day(new_first_seen)


def move_channel(rec: UserRecord, old: str, cal: Calendar, counts: Counter[str]) -> None:
    """The user moved from channel `old` to `rec.channel` (once, from none to its first): its
    classes of every interval so far move with it; the all-channel counters stay."""
    base = cal.day(rec.first_seen)
    for g in GRANULARITIES:
        for j, kind in contributions(rec.active_days, base, g):
            start = first_day(g, j)
            counts[ctr.interval_users(g, start, old, kind)] -= 1
            counts[ctr.interval_users(g, start, rec.channel, kind)] += 1


def withdraw(rec: UserRecord, cal: Calendar, counts: Counter[str]) -> None:
    """An erased (or merged) user: every class it counts in, taken away (its channel's and
    all channels')."""
    _add(rec, -1, cal, counts)


def credit(rec: UserRecord, cal: Calendar, counts: Counter[str]) -> None:
    """A user made whole at once (a merge's result): every class it counts in, added."""
    _add(rec, 1, cal, counts)


def _add(rec: UserRecord, sign: int, cal: Calendar, counts: Counter[str]) -> None:
    base = cal.day(rec.first_seen)
    for g in GRANULARITIES:
        for j, kind in contributions(rec.active_days, base, g):
            start = first_day(g, j)
            counts[ctr.interval_users(g, start, rec.channel, kind)] += sign
            counts[ctr.interval_users(g, start, ALL_CHANNELS, kind)] += sign


def contributions(bits: int, base: int, g: Granularity) -> list[tuple[int, str]]:
    """Every `(interval, kind)` a user with these active days counts in (dormant ones included)."""
    active = sorted({index(g, base + k) for k in days_of(bits)})
    out: list[tuple[int, str]] = []
    previous: int | None = None
    for j in active:
        if previous is None:
            out.append((j, "new"))
        else:
            if previous != j - 1:
                out.append((previous + 1, "dormant"))
            out.append((j, "returning" if previous == j - 1 else "resurrecting"))
        previous = j
    if previous is not None:
        out.append((previous + 1, "dormant"))
    return out


def _lowest(bits: int) -> int:
    return (bits & -bits).bit_length() - 1


def _active(bits: int, base: int, g: Granularity, i: int) -> bool:
    """Any day of interval `i` in the set."""
    lo, hi = bounds(g, i)
    lo -= base
    hi -= base
    if hi <= 0:
        return False
    if lo < 0:
        lo = 0
    return bool(bits >> lo & ((1 << (hi - lo)) - 1))


def _kind(active: bool, active_before: bool, j: int, first: int | None) -> str | None:
    """The user's kind in interval `j`, active in it or not and in `j - 1` or not, given its
    first active interval `first`."""
    if first is None or j < first:
        return None
    if active:
        if j == first:
            return "new"
        return "returning" if active_before else "resurrecting"
    return "dormant" if j > first and active_before else None
