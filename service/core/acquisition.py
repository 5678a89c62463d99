"""First sight of a user: the channel and cohort they are counted under, and their one move.

A user is created by their first activity event: counted once under the channel it names
(or `-` without one), in the cohort of its local day (the profile's calendar), and entering
their first stage. The first channel seen sticks, except that a user first seen without one
moves, with every count already made for them, to the first channel they show.
"""

from __future__ import annotations

from collections import Counter

from service.core import counters as ctr
from service.core.calendar import Calendar
from service.core.contributions import add_population
from service.core.events import Event
from service.core.lifecycle import Thresholds, state_at
from service.core.records import NO_CHANNEL, UserRecord
from service.core.retention import RetentionRule

NEW_USER = "-"  # the "from" state of a user's first transition


def first_sight(ev: Event, tau: int, th: Thresholds, calendar: Calendar, counts: Counter[str]) -> UserRecord:
    """The record an activity event creates, evaluated at `tau` (its ts, or the partition's
    clock if later). Counts: `users`, `cohort` (of its local day), and the transition into
    the first stage."""
    ts = ev.ts
    channel = ev.channel or NO_CHANNEL
    counts[ctr.users(channel)] += 1
    counts[ctr.cohort(channel, calendar.day(ts))] += 1
    counts[ctr.transition(NEW_USER, state_at(ts, ts, tau, th))] += 1
    # active on its first day (service.core.retention)
    return UserRecord(first_seen=ts, last_active=ts, seen_until=tau, channel=channel, days=1)


def move_channel(
    rec: UserRecord,
    channel: str,
    rule: RetentionRule,
    counts: Counter[str],
    sums: dict[str, float],
) -> str:
    """Move a user seen without a channel to `channel`, with their counts; returns the old one.
    Counts: every population counter the user is in (`service.core.contributions`) and the
    revenue sum move from the old channel to the new."""
    old = rec.channel
    add_population(rec, -1, rule.days, rule.calendar, counts, sums)
    rec.channel = channel
    add_population(rec, 1, rule.days, rule.calendar, counts, sums)
    return old
