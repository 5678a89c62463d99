"""Applying a batch of one partition's events to its users: pure, so it can be replayed.

`apply_events` takes the stored records of the batch's users, the events (already
de-duplicated and in partition order), the partition's sweep clock and the profile, and
returns everything the store must write, as data. `sweep` does the same for the
passing of time. Neither reads a clock: the caller passes it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from service.core import counters as ctr
from service.core.acquisition import first_sight, move_channel
from service.core.batch_state import CHANNEL_COST, IDENTIFY, OTHER_TYPE, BatchResult, BatchRules, Working
from service.core.control_steps import control_step, request_merge
from service.core.controls import CONTROL_TYPES
from service.core.durations import DAY_MS
from service.core.events import Event
from service.core.funnel import count_step
from service.core.gaps import gap_bucket
from service.core.identity import IDENTITY_TYPES
from service.core.interval_lifecycle import Latest, add_latest, move_base, note_active_day
from service.core.interval_lifecycle import move_channel as move_interval_channel
from service.core.lifecycle import state_at, timed_transitions
from service.core.named_funnels import contribution, count_change, note_time
from service.core.profile import Profile
from service.core.records import NO_CHANNEL, UserRecord
from service.core.retention import move_first_day, note_activity
from service.core.traits import set_traits
from service.core.triggers import TriggerLog, TriggerPlan, attribute, fire_due, next_due, schedule
from service.core.value import count_high_value, count_order, rfm_class


def apply_events(
    stored: Mapping[str, UserRecord | None],
    events: Iterable[Event],
    swept: int,
    profile: Profile,
    first_index_window: int | None = None,
    suppressed: Collection[str] = (),
    merged_into: Mapping[str, str] | None = None,
) -> BatchResult:
    """Apply `events` in order; `swept` is the clock up to which the partition was swept.

    Each event is evaluated at `tau = max(ts, accounted)` where `accounted` is the later
    of the user's `seen_until` and `swept`: time-driven transitions up to `tau` are counted
    first with the old record, then the change the event makes at `tau`. A late event
    therefore changes the record but never re-counts a transition already counted.

    Users stay in the `first_seen` index while younger than `first_index_window` (default:
    the profile's new window; longer lets what-if questions ask about longer windows).

    Each aspect is one step that adds its counter changes to `out.counts` (and `out.sums`):
    first sight (acquisition), the user's clock and state (`_advance`), the funnel, orders
    and revenue, triggers; the named funnels' counters and the indexes once per user at the end.

    `suppressed` are the batch's users on the suppression list: their events are dropped
    and counted. `merged_into` maps the batch's ids merged into another (their tombstones):
    their events are sent on under the other id. Control events (`service.core.controls`)
    change both, in order with the events (`service.core.control_steps`).
    """
    rules = BatchRules.of(profile, first_index_window)
    out = BatchResult()
    counts = out.counts
    tlog = out.triggers
    tlog.counts = counts
    th, plan, labels = rules.th, rules.plan, rules.labels
    trait_names = profile.traits
    counted_types, revenue_types, schedules = rules.counted_types, rules.revenue_types, rules.schedules
    work = Working(stored, rules.rfm)
    class_before, had_pending, live = work.class_before, work.had_pending, work.live
    dirty_active, dirty_first = work.dirty_active, work.dirty_first
    blocked = set(suppressed)
    merged = dict(merged_into or {})
    funnels = rules.funnels
    keep_times = funnels.keep if funnels is not None else {}
    latest: Latest = Counter()  # new latest active days, counted per interval once at the end

    for ev in events:
        uid = ev.user_id
        if uid in blocked or uid in merged or ev.type in CONTROL_TYPES:
            control_step(ev, work, rules, out, blocked, merged)
            continue
        ts = ev.ts
        if ts > out.watermark:
            out.watermark = ts
        counts[ctr.event_type(ev.type if ev.type in labels else OTHER_TYPE)] += 1
        if ev.type == CHANNEL_COST:
            if ev.channel and ev.amount:
                out.sums[ctr.cost(ev.channel)] += ev.amount
            counts[ctr.APPLIED] += 1
            continue
        rec = live[uid] if uid in live else work.current(uid)
        active = profile.is_activity(ev.type)
        if ev.type in IDENTITY_TYPES:
            request_merge(ev, out)

        if rec is None:
            if not active:
                counts[ctr.UNKNOWN_USER] += 1
                continue
            tau = ts if ts > swept else swept
            rec = live[uid] = first_sight(ev, tau, th, rules.calendar, counts)
            note_active_day(rec, ts, rules.calendar, counts, latest)
            out.channels.add(rec.channel)
            dirty_active.add(uid)
            dirty_first.add(uid)
        else:
            tau, moved = _advance(uid, rec, ev, active, swept, rules, out, latest)
            if moved & _MOVED_ACTIVE:
                dirty_active.add(uid)
            if moved & _MOVED_FIRST:
                dirty_first.add(uid)

        if ev.type == IDENTIFY and trait_names and ev.properties:
            set_traits(rec, ev.properties.get("traits"), trait_names)
        if ev.type in counted_types:
            count_step(rec, ev.type, ts, rules.funnel, rules.steps, counts, out.conversions)
        keep = keep_times.get(ev.type)
        if keep is not None:
            note_time(rec, ev.type, ts, keep)
        if ev.type in revenue_types:
            added = count_order(rec, ev.amount, ts, rules.rfm, rules.calendar, counts)
            if added:
                out.sums[ctr.revenue(rec.channel)] += added
            schedule(uid, rec, ev, tau, profile, True, tlog)
        elif ev.type in schedules:
            schedule(uid, rec, ev, tau, profile, False, tlog)
        if rec.pending and rec.pending[0].due <= tau:
            fire_due(uid, rec, tau, tau, plan, tlog)  # scheduled by a late event: already due
        counts[ctr.APPLIED] += 1
    add_latest(latest, counts)

    for uid, maybe in live.items():
        if maybe is None:
            if uid in out.deleted:
                # erased: out of the indexes it was in before this batch too, and the named
                # funnels (counted by the change from the stored record) lose what it added
                if class_before.get(uid):
                    out.rfm_removals[class_before[uid]].append(uid)
                out.due_index[uid] = None
                old = stored.get(uid)
                if funnels is not None and old is not None:
                    for name in contribution(old, funnels):
                        counts[name] -= 1
            continue
        out.deleted.discard(uid)  # erased, restored and seen again within the batch
        out.records[uid] = maybe
        if funnels is not None:
            count_change(stored.get(uid), maybe, funnels, counts)
        out.place(  # positional: once per user of the batch
            uid,
            maybe,
            class_before.get(uid, 0),
            rfm_class(maybe, rules.rfm),
            uid in had_pending,
            uid in dirty_active,
            uid in dirty_first,
            rules.keep_first,
        )
    for uid, target in merged.items():
        if merged_into is None or merged_into.get(uid) != target:
            out.tombstones[uid] = target
    changed = blocked.symmetric_difference(suppressed)
    out.suppress = changed & blocked
    out.unsuppress = changed - blocked
    return out


_MOVED_ACTIVE = 1  # last_active or channel changed: the active and RFM indexes
_MOVED_FIRST = 2  # first_seen or channel changed: the first_seen index


def _advance(
    uid: str,
    rec: UserRecord,
    ev: Event,
    active: bool,
    swept: int,
    rules: BatchRules,
    out: BatchResult,
    latest: Latest,
) -> tuple[int, int]:
    """An event of an existing user moves their clock to `tau`: the time that passed first
    (transitions, due triggers), then what the event changes (attribution, channel, cohort
    and retention, last_active and the return gap, the state). Returns `tau` and which
    indexes the user moved in. Counts: `tr`, `hv`, trigger and outcome counters, `ret`,
    `cohort`, `gap`, and a channel move's counters; `out.gaps` gets each return."""
    counts = out.counts
    th, rfm, plan, calendar = rules.th, rules.rfm, rules.plan, rules.calendar
    ts = ev.ts
    moved = 0
    accounted = rec.seen_until if rec.seen_until > swept else swept
    tau = ts if ts > accounted else accounted
    for point, a, b in timed_transitions(rec.first_seen, rec.last_active, accounted, tau, th):
        counts[ctr.transition(a, b)] += 1
        count_high_value(counts, rec, a, b, point, rfm, calendar)
    la = rec.last_active
    if (rec.pending and rec.pending[0].due <= tau) or (la + plan.first <= tau and la + plan.last > accounted):
        fire_due(uid, rec, accounted, tau, plan, out.triggers)
    if rec.recent:
        attribute(rec, ev, active, ev.type in rules.revenue_types, rules.attribution, counts)
    before = state_at(rec.first_seen, la, tau, th)
    if ev.channel and rec.channel == NO_CHANNEL:
        old = move_channel(rec, ev.channel, rules.retention, counts, out.sums)
        move_interval_channel(rec, old, rules.calendar, counts)
        out.index_removals[old].append(uid)
        out.channels.add(ev.channel)
        moved = _MOVED_ACTIVE | _MOVED_FIRST
    if ts < rec.first_seen:  # the cohort follows the earliest event seen
        move_first_day(rec, ts, rules.retention, counts)
        move_base(rec, ts, rules.calendar)
        rec.first_seen = ts
        moved |= _MOVED_FIRST
    if active:
        if rules.utc:
            offset = ts // DAY_MS - rec.first_seen // DAY_MS
        else:
            offset = calendar.day(ts) - calendar.day(rec.first_seen)
        if 0 <= offset <= rules.retention.span and not rec.days >> offset & 1:  # a day not noted yet
            note_activity(rec, ts, rules.retention, counts)
        note_active_day(rec, ts, rules.calendar, counts, latest)  # lifecycle per interval
        if ts > la:
            bucket = gap_bucket(ts - la)
            if bucket is not None:
                counts[ctr.return_gap(rec.channel, bucket)] += 1
                out.gaps.append((rec.channel, ts - la))
            rec.last_active = ts
            moved |= _MOVED_ACTIVE
    after = state_at(rec.first_seen, rec.last_active, tau, th)
    if after != before:
        counts[ctr.transition(before, after)] += 1
        count_high_value(counts, rec, before, after, tau, rfm, calendar)
    rec.seen_until = tau
    return tau, moved


@dataclass
class SweepResult:
    """What the passing of time changed: transitions counted, triggers fired, records touched."""

    counts: Counter[str] = field(default_factory=Counter)
    triggers: TriggerLog = field(default_factory=TriggerLog)
    records: dict[str, UserRecord] = field(default_factory=dict)
    due_index: dict[str, int | None] = field(default_factory=dict)


def sweep(
    candidates: Mapping[str, UserRecord], swept: int, now: int, profile: Profile, mark_accounted: bool = False
) -> SweepResult:
    """Transitions and triggers that time alone caused in `(swept, now]` for the candidate users.

    Candidates are the users with a change point, a recall point or a pending trigger due
    in that interval (found by range queries on the partition's indexes); anything else
    has nothing to count or fire. Records are returned only where triggers changed them,
    or, with `mark_accounted`, for every candidate, accounted up to `now`: a sweep done in
    chunks commits before the partition's `swept` moves, and a chunk must not count again.
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
            count_high_value(
                counts, rec, a, b, point, profile.rfm, profile.calendar
            )  # the month it happened in
        before = rec.pack()
        live = rec.copy()
        fire_due(uid, live, accounted, now, plan, out.triggers)
        if mark_accounted and live.seen_until < now:
            live.seen_until = now
        if live.pack() != before:
            out.records[uid] = live
            if rec.pending or live.pending:
                out.due_index[uid] = next_due(live)
    return out
