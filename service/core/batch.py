"""Applying a batch of one partition's events to its users: pure, so it can be replayed.

`apply_events` takes the stored records of the batch's users, the events (already
de-duplicated and in partition order), the partition's sweep clock and the profile, and
returns everything the store must write, as data. `sweep` does the same for the
passing of time. Neither reads a clock: the caller passes it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from service.core import counters as ctr
from service.core.durations import DAY_MS
from service.core.events import Event
from service.core.funnel import furthest_stage
from service.core.gaps import gap_bucket
from service.core.lifecycle import state_at, timed_transitions
from service.core.profile import Profile, Rfm
from service.core.records import NO_CHANNEL, UserRecord
from service.core.retention import RetentionRule, move_first_day, note_activity
from service.core.triggers import TriggerLog, TriggerPlan, attribute, fire_due, next_due, schedule

OUTCOME_TYPES = frozenset({"message_delivered", "message_click", "payment_click", "paid"})
OTHER_TYPE = "other"
REGISTRATION = "register"  # the event type that makes a user registered (payment rate's denominator)
CHANNEL_COST = "channel_cost"  # acquisition cost of `channel` (amount); not a user's activity
NEW_USER = "-"


def known_types(profile: Profile) -> frozenset[str]:
    """Event types counted under their own name; others count as `other` (bounded labels)."""
    return (
        profile.funnel_events
        | (profile.activity_types or frozenset())
        | profile.revenue_types
        | OUTCOME_TYPES
        | {"visit", "login", "register", "verify", "order", "renew"}
    )


@dataclass(slots=True)
class BatchResult:
    """What one batch changes; the store turns it into one atomic commit."""

    records: dict[str, UserRecord] = field(default_factory=dict)
    active_index: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    first_index: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    index_removals: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    # users whose first_seen moved back past the index's window: their (later) entry is stale
    first_removals: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    counts: Counter[str] = field(default_factory=Counter)
    sums: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    watermark: int = 0
    channels: set[str] = field(default_factory=set)
    gaps: list[tuple[str, int]] = field(default_factory=list)  # (channel, gap ms) of each return
    conversions: list[tuple[int, int]] = field(default_factory=list)  # (stage index, ms since first seen)
    rfm_index: dict[int, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    rfm_removals: dict[int, list[str]] = field(default_factory=lambda: defaultdict(list))
    triggers: TriggerLog = field(default_factory=TriggerLog)
    due_index: dict[str, int | None] = field(default_factory=dict)  # None: no longer pending


def apply_events(
    stored: Mapping[str, UserRecord | None],
    events: Iterable[Event],
    swept: int,
    profile: Profile,
    first_index_window: int | None = None,
) -> BatchResult:
    """Apply `events` in order; `swept` is the clock up to which the partition was swept.

    Each event is evaluated at `tau = max(ts, accounted)` where `accounted` is the later
    of the user's `seen_until` and `swept`: time-driven transitions up to `tau` are counted
    first with the old record, then the change the event makes at `tau`. A late event
    therefore changes the record but never re-counts a transition already counted.

    Users stay in the `first_seen` index while younger than `first_index_window` (default:
    the profile's new window; longer lets what-if questions ask about longer windows).
    """
    th = profile.thresholds
    keep_first = max(first_index_window or 0, th.new_window)
    funnel = profile.funnel
    funnel_events = profile.funnel_events
    counted_types = funnel_events | {REGISTRATION}
    rfm = profile.rfm
    class_before: dict[str, int] = {}
    retention = RetentionRule.of(profile.retention_days)
    horizon = (retention.span + 1) * DAY_MS  # activity later than this after first_seen: no retention day
    revenue_types = profile.revenue_types
    labels = known_types(profile)
    out = BatchResult()
    counts = out.counts
    tlog = out.triggers
    tlog.counts = counts
    rules = profile.triggers
    plan = TriggerPlan.of(profile)
    schedules = rules.onboarding_after if rules.onboarding_enabled else frozenset()
    attribution = rules.attribution_window
    had_pending: set[str] = set()
    live: dict[str, UserRecord | None] = {}
    dirty_active: set[str] = set()
    dirty_first: set[str] = set()

    for ev in events:
        uid = ev.user_id
        ts = ev.ts
        if ts > out.watermark:
            out.watermark = ts
        counts[ctr.event_type(ev.type if ev.type in labels else OTHER_TYPE)] += 1
        if ev.type == CHANNEL_COST:
            if ev.channel and ev.amount:
                out.sums[ctr.cost(ev.channel)] += ev.amount
            counts[ctr.APPLIED] += 1
            continue
        if uid in live:
            rec = live[uid]
        else:
            found = stored.get(uid)
            rec = live[uid] = found.copy() if found is not None else None
            class_before[uid] = rfm_class(found, rfm) if found is not None else 0
            if found is not None and found.pending:
                had_pending.add(uid)
        active = profile.is_activity(ev.type)

        if rec is None:
            if not active:
                counts[ctr.UNKNOWN_USER] += 1
                continue
            tau = max(ts, swept)
            channel = ev.channel or NO_CHANNEL
            rec = live[uid] = UserRecord(first_seen=ts, last_active=ts, seen_until=tau, channel=channel)
            counts[ctr.users(channel)] += 1
            counts[ctr.cohort(channel, ts // DAY_MS)] += 1
            rec.days = 1  # active on its first day
            counts[ctr.transition(NEW_USER, state_at(ts, ts, tau, th))] += 1
            out.channels.add(channel)
            dirty_active.add(uid)
            dirty_first.add(uid)
        else:
            tau = max(ts, rec.seen_until, swept)
            accounted = max(rec.seen_until, swept)
            for point, a, b in timed_transitions(rec.first_seen, rec.last_active, accounted, tau, th):
                counts[ctr.transition(a, b)] += 1
                _count_high_value(counts, rec, a, b, point, rfm)
            la = rec.last_active
            if (rec.pending and rec.pending[0].due <= tau) or (
                la + plan.first <= tau and la + plan.last > accounted
            ):
                fire_due(uid, rec, accounted, tau, plan, tlog)
            if rec.recent:
                attribute(rec, ev, active, ev.type in revenue_types, attribution, counts)
            before = state_at(rec.first_seen, rec.last_active, tau, th)
            if ev.channel and rec.channel == NO_CHANNEL:
                _move_channel(uid, rec, ev.channel, out, profile.retention_days)
                dirty_active.add(uid)
                dirty_first.add(uid)
            if ts < rec.first_seen:  # the cohort follows the earliest event seen
                move_first_day(rec, ts, retention, counts)
                rec.first_seen = ts
                dirty_first.add(uid)
            if active and ts < rec.first_seen + horizon:
                note_activity(rec, ts, retention, counts)
            if active and ts > rec.last_active:
                bucket = gap_bucket(ts - rec.last_active)
                if bucket is not None:
                    counts[ctr.return_gap(rec.channel, bucket)] += 1
                    out.gaps.append((rec.channel, ts - rec.last_active))
                rec.last_active = ts
                dirty_active.add(uid)
            after = state_at(rec.first_seen, rec.last_active, tau, th)
            if after != before:
                counts[ctr.transition(before, after)] += 1
                _count_high_value(counts, rec, before, after, tau, rfm)
            rec.seen_until = tau

        if ev.type in counted_types:
            seen_before = rec.counts.get(ev.type, 0)
            rec.counts[ev.type] = seen_before + 1
            if ev.type == REGISTRATION and not seen_before:
                counts[ctr.registered(rec.channel)] += 1
            if ev.type in funnel_events:
                reached = furthest_stage(rec.counts, funnel)
                for k in range(rec.stage + 1, reached + 1):
                    counts[ctr.stage(rec.channel, k)] += 1
                    since_first = ts - rec.first_seen
                    bucket = gap_bucket(since_first)
                    counts[ctr.time_to_convert(k, -1 if bucket is None else bucket)] += 1
                    out.conversions.append((k, since_first))
                rec.stage = max(rec.stage, reached)
        if ev.type in revenue_types:
            if not rec.orders:
                counts[ctr.payers(rec.channel)] += 1
            rec.orders += 1
            counts[ctr.orders(rec.channel)] += 1
            if ev.amount:
                was_high = rec.revenue >= rfm.monetary
                rec.revenue += ev.amount
                out.sums[ctr.revenue(rec.channel)] += ev.amount
                if not was_high and rec.revenue >= rfm.monetary:
                    counts[ctr.high_value("gained", month_of(ts))] += 1
            schedule(uid, rec, ev, tau, profile, True, tlog)
        elif ev.type in schedules:
            schedule(uid, rec, ev, tau, profile, False, tlog)
        if rec.pending and rec.pending[0].due <= tau:
            fire_due(uid, rec, tau, tau, plan, tlog)  # scheduled by a late event: already due
        counts[ctr.APPLIED] += 1

    for uid, maybe in live.items():
        if maybe is None:
            continue
        out.records[uid] = maybe
        if maybe.pending or uid in had_pending:
            out.due_index[uid] = next_due(maybe)
        before_class, after_class = class_before.get(uid, 0), rfm_class(maybe, rfm)
        if before_class and before_class != after_class:
            out.rfm_removals[before_class].append(uid)
        if after_class and (after_class != before_class or uid in dirty_active):
            out.rfm_index[after_class][uid] = maybe.last_active
        if uid in dirty_active:
            out.active_index[maybe.channel][uid] = maybe.last_active
        if uid in dirty_first:
            if maybe.first_seen + keep_first > maybe.seen_until:
                out.first_index[maybe.channel][uid] = maybe.first_seen
            else:
                out.first_removals[maybe.channel].append(uid)
    return out


def _move_channel(
    rec_uid: str, rec: UserRecord, channel: str, out: BatchResult, retention_days: tuple[int, ...]
) -> None:
    """The first channel seen sticks: a user seen without one moves, with their counts."""
    old = rec.channel
    counts = out.counts
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
    day = rec.first_seen // DAY_MS
    counts[ctr.cohort(old, day)] -= 1
    counts[ctr.cohort(channel, day)] += 1
    for i, after_days in enumerate(retention_days):
        if rec.retained & (1 << i):
            counts[ctr.retained(old, day, after_days)] -= 1
            counts[ctr.retained(channel, day, after_days)] += 1
    if rec.revenue:
        out.sums[ctr.revenue(old)] -= rec.revenue
        out.sums[ctr.revenue(channel)] += rec.revenue
    out.index_removals[old].append(rec_uid)
    rec.channel = channel
    out.channels.add(channel)


@dataclass(slots=True)
class SweepResult:
    """What the passing of time changed: transitions counted, triggers fired, records touched."""

    counts: Counter[str] = field(default_factory=Counter)
    triggers: TriggerLog = field(default_factory=TriggerLog)
    records: dict[str, UserRecord] = field(default_factory=dict)
    due_index: dict[str, int | None] = field(default_factory=dict)


def sweep(candidates: Mapping[str, UserRecord], swept: int, now: int, profile: Profile) -> SweepResult:
    """Transitions and triggers that time alone caused in `(swept, now]` for the candidate users.

    Candidates are the users with a change point, a recall point or a pending trigger due
    in that interval (found by range queries on the partition's indexes); anything else
    has nothing to count or fire. Records are returned only where triggers changed them.
    """
    th = profile.thresholds
    plan = TriggerPlan.of(profile)
    out = SweepResult()
    counts = out.counts
    out.triggers.counts = counts
    for uid, rec in candidates.items():
        accounted = max(rec.seen_until, swept)
        for point, a, b in timed_transitions(rec.first_seen, rec.last_active, accounted, now, th):
            counts[ctr.transition(a, b)] += 1
            _count_high_value(counts, rec, a, b, point, profile.rfm)  # the month it happened in
        before = rec.pack()
        live = rec.copy()
        fire_due(uid, live, accounted, now, plan, out.triggers)
        if live.pack() != before:
            out.records[uid] = live
            if rec.pending or live.pending:
                out.due_index[uid] = next_due(live)
    return out


def rfm_class(rec: UserRecord, rfm: Rfm) -> int:
    """Frequency and monetary score as two bits (2: frequent, 1: high value); recency is read
    from `last_active` at the clock, so it needs no class of its own."""
    return (2 if rec.orders >= rfm.frequency else 0) | (1 if rec.revenue >= rfm.monetary else 0)


def month_of(ts: int) -> str:
    return datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m")


def _count_high_value(counts: Counter[str], rec: UserRecord, a: str, b: str, at: int, rfm: Rfm) -> None:
    """High-value users lost to churn and recalled from it (the monthly net new high-value users)."""
    if rec.revenue < rfm.monetary:
        return
    if b == "churned" and a not in ("churned", "dead"):
        counts[ctr.high_value("lost", month_of(at))] += 1
    elif a in ("churned", "dead") and b in ("new", "retained"):
        counts[ctr.high_value("recalled", month_of(at))] += 1
