"""A user's place in the named funnels, and the counters it contributes.

Definitions (docs/api.md#named-funnels). A step is *reached* at the time of the user's
`nth` event of its type, counted in event time over every event applied for the user:
`r_k`, or never. Then, for a funnel with window `w` (infinite without one):

- `strict`: the user enters at `r_1`; step `k > 1` counts while `r_{k-1} <= r_k <= r_1 + w`,
  and the first step that does not stops the chain. The user is at the last step of it.
- `any`: the user enters at the earliest `r_k` of any step; they are at the furthest step
  with `r_k <= entry + w` (counted for every step up to it, as the core path is).

Both are functions of the earliest `nth` times of each step's event type, so the record
keeps only those (`UserRecord.firsts`, for the users who had such an event) and the answer
does not depend on the order events arrive in: a late event can only move a time back.
The cohort is the Monday-based week of the entry, in the profile's calendar.

Counters are a user's *contribution* (`contribution`): one per step up to their step, by
channel, and by channel and cohort week. A batch adds the difference between a user's
contribution after it and before it, so the counters stay exact whatever changed.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service.core import counters as ctr
from service.core.calendar import Calendar
from service.core.funnel_rules import NamedFunnel, Order
from service.core.records import UserRecord


@dataclass(frozen=True)
class FunnelPlan:
    """The profile's named funnels as a batch uses them."""

    funnels: tuple[NamedFunnel, ...]
    keep: dict[str, int]  # event type -> how many of its earliest times the funnels need
    calendar: Calendar

    @classmethod
    def of(cls, funnels: tuple[NamedFunnel, ...], calendar: Calendar) -> FunnelPlan | None:
        """None without named funnels: nothing to keep or count."""
        if not funnels:
            return None
        keep: dict[str, int] = {}
        for funnel in funnels:
            for step in funnel.steps:
                keep[step.event] = max(keep.get(step.event, 0), step.nth)
        return cls(funnels, keep, calendar)


def note_time(rec: UserRecord, etype: str, ts: int, keep: int) -> None:
    """Keep `ts` among the earliest `keep` times of `etype`. The list is replaced, never
    changed in place, so a shallow copy of the record stays what it was."""
    times = rec.firsts.get(etype)
    if times is None:
        rec.firsts[etype] = [ts]
    elif len(times) < keep or ts < times[-1]:
        new = list(times)
        bisect.insort(new, ts)
        rec.firsts[etype] = new[:keep]


def position(firsts: Mapping[str, list[int]], funnel: NamedFunnel) -> tuple[int, int] | None:
    """(index of the user's step, entry time), or None for a user who has not entered."""
    reached: list[int | None] = []
    for step in funnel.steps:
        times = firsts.get(step.event)
        reached.append(times[step.nth - 1] if times is not None and len(times) >= step.nth else None)
    window = funnel.window
    if funnel.order is Order.STRICT:
        entry = reached[0]
        if entry is None:
            return None
        deadline = None if window is None else entry + window
        at, prev = 0, entry
        for r in reached[1:]:
            if r is None or r < prev or (deadline is not None and r > deadline):
                break
            at, prev = at + 1, r
        return at, entry
    done = [r for r in reached if r is not None]
    if not done:
        return None
    entry = min(done)
    deadline = None if window is None else entry + window
    at = max(k for k, r in enumerate(reached) if r is not None and (deadline is None or r <= deadline))
    return at, entry


def positions(firsts: Mapping[str, list[int]], funnels: tuple[NamedFunnel, ...]) -> dict[str, dict[str, Any]]:
    """A user's step and entry time in each named funnel they entered (their document)."""
    out: dict[str, dict[str, Any]] = {}
    for funnel in funnels:
        found = position(firsts, funnel)
        if found is not None:
            at, entry = found
            out[funnel.name] = {"step": funnel.steps[at].name, "step_index": at, "entered_at": entry}
    return out


def week_of(day: int) -> int:
    """The Monday (a day number) of `day`'s week; day 0, 1970-01-01, was a Thursday."""
    return day - (day + 3) % 7


def contribution(rec: UserRecord, plan: FunnelPlan) -> list[str]:
    """The counters a user adds 1 to: per funnel, each step up to theirs, by channel and
    by channel and cohort week."""
    out: list[str] = []
    for funnel in plan.funnels:
        found = position(rec.firsts, funnel)
        if found is None:
            continue
        at, entry = found
        week = week_of(plan.calendar.day(entry))
        for k in range(at + 1):
            out.append(ctr.named_funnel(funnel.name, rec.channel, k))
            out.append(ctr.named_funnel_cohort(funnel.name, rec.channel, week, k))
    return out


def count_change(
    before: UserRecord | None, after: UserRecord, plan: FunnelPlan, counts: Counter[str]
) -> None:
    """Add the change of a user's contribution to `counts` (nothing when their funnel times
    and channel are as they were)."""
    if before is not None and before.channel == after.channel and before.firsts == after.firsts:
        return
    if before is not None and before.firsts:
        for name in contribution(before, plan):
            counts[name] -= 1
    if after.firsts:
        for name in contribution(after, plan):
            counts[name] += 1
