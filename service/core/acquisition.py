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
from service.core.events import Event
from service.core.funnel import REGISTRATION
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
    Counts: every per-channel counter the user is in (users, stages, orders, payers,
    registered, cohort, retained) and the revenue sum move from the old channel to the new."""
    old = rec.channel
    counts[ctr.users(old)] -= 1
    counts[ctr.users(channel)] += 1
    for k in range(rec.stage + 1):
        counts[ctr.stage(old, k)] -= 1
        counts[ctr.stage(channel, k)] += 1
    if rec.orders:
        counts[ctr.orders(old)] -= rec.orders
        counts[ctr.orders(channel)] += rec.orders
        counts[ctr.payers(old)] -= 1
        counts[ctr.payers(channel)] += 1
    if rec.counts.get(REGISTRATION):
        counts[ctr.registered(old)] -= 1
        counts[ctr.registered(channel)] += 1
    day = rule.calendar.day(rec.first_seen)
    counts[ctr.cohort(old, day)] -= 1
    counts[ctr.cohort(channel, day)] += 1
    for i, after_days in enumerate(rule.days):
        if rec.retained & (1 << i):
            counts[ctr.retained(old, day, after_days)] -= 1
            counts[ctr.retained(channel, day, after_days)] += 1
    if rec.revenue:
        sums[ctr.revenue(old)] -= rec.revenue
        sums[ctr.revenue(channel)] += rec.revenue
    rec.channel = channel
    return old
