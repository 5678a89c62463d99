"""Recall, renewal and onboarding triggers: when they are due, and what happens to them.

Pure, like the lifecycle: a user's triggers are decided from their record and the
clock. A recall is due at `last_active + threshold + delay` (derived, never stored);
renewal reminders, expiries, onboarding checks and sends deferred by quiet hours are
`pending` entries of the record. Whoever advances a user's clock (a batch applying
their event, or the sweep) fires what fell due in between, in due order, evaluated as
of the due time. Ids are deterministic, so a replay produces the same triggers.

Guard rails, in order: suppression (the user converted or came back meanwhile, or the
policy was renewed), quiet hours (defer to their end, never drop), the frequency cap,
then the holdout group (recorded and published with `holdout: true`, not to be sent).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from heapq import heapify, heappop, heappush
from itertools import count
from typing import Any, NamedTuple

from service.core import counters as ctr
from service.core.calendar import Calendar
from service.core.durations import DAY_MS
from service.core.events import Event, parse_ts
from service.core.lifecycle import idle_after
from service.core.profile import Profile
from service.core.records import FiredTrigger, PendingTrigger, UserRecord
from service.core.trigger_rules import RECALL_STATES, QuietHours, TriggerRules

RECENT_KEPT = 8  # fired triggers kept per user (until the user's next event after their
# attribution window), for attribution and GET /users/{id}/triggers

# outcome flags of a fired trigger (bits of `FiredTrigger.flags`)
HOLDOUT = 1
ADVISOR = 2
OUTCOME_BITS = {
    "message_delivered": 4,
    "message_click": 8,
    "payment_click": 16,
    "paid": 32,
    "returned": 64,  # any activity of the user within the attribution window
    "ordered": 128,  # an order or renewal within the attribution window
}
OUTCOMES = tuple(OUTCOME_BITS)
STATUSES = ("sent", "held_out", "capped", "suppressed", "cancelled", "deferred")
# A fired recall keeps the state it recalled the user from in two more flag bits, so its
# outcomes are counted by origin too (0: none, a trigger of another kind or fired before).
ORIGIN_SHIFT = 8
ORIGINS = ("", *RECALL_STATES)


def origin_bits(origin: str) -> int:
    return ORIGINS.index(origin) << ORIGIN_SHIFT if origin in ORIGINS else 0


def origin_of(flags: int) -> str:
    """The state a fired recall recalled the user from; "" for other triggers."""
    return ORIGINS[flags >> ORIGIN_SHIFT & 3]


@dataclass(init=False)
class Fired:
    """A trigger that reached its due time and was sent or held out (both are published).
    Never changed once made."""

    id: str
    kind: str
    user_id: str
    channel: str
    at: int  # when it fired (due, or the end of quiet hours)
    due: int  # when it was first due
    tier: str
    holdout: bool
    advisor: bool
    data: dict[str, Any]

    # written out, not generated: compiled, that is ~15 times faster (see `Event`)
    def __init__(
        self,
        id: str,
        kind: str,
        user_id: str,
        channel: str,
        at: int,
        due: int,
        tier: str,
        holdout: bool,
        advisor: bool,
        data: dict[str, Any],
    ) -> None:
        self.id = id
        self.kind = kind
        self.user_id = user_id
        self.channel = channel
        self.at = at
        self.due = due
        self.tier = tier
        self.holdout = holdout
        self.advisor = advisor
        self.data = data


@dataclass
class TriggerLog:
    """What firing and scheduling produced in one batch or sweep."""

    fired: list[Fired] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)


def trigger_id(kind: str, user_id: str, key: str) -> str:
    """The idempotency key: the same cause always gives the same id."""
    return hashlib.blake2b(f"{kind}|{user_id}|{key}".encode(), digest_size=16).hexdigest()


def in_holdout(user_id: str, percent: float) -> bool:
    """A stable control group: the same users are held out for every trigger."""
    if percent <= 0:
        return False
    return _holdout_bucket(user_id) < percent * 100


@lru_cache(maxsize=1 << 14)  # a user who was away fires several recalls at once
def _holdout_bucket(user_id: str) -> int:
    h = int.from_bytes(hashlib.blake2b(f"holdout|{user_id}".encode(), digest_size=8).digest(), "big")
    return h % 10_000


def recall_offsets(profile: Profile) -> list[int]:
    """Idle times at which a recall falls due: the sweep's range queries on `last_active`."""
    th = profile.thresholds
    return [idle_after(r.state, th) + r.delay for r in profile.triggers.recall]


class RecallPoint(NamedTuple):
    """A recall rule as the plan uses it: due `offset` after `last_active`."""

    offset: int  # the state's idle threshold plus the rule's delay
    state: str
    extra: dict[str, Any]  # the published data (state, recall, tier); copied into each entry


@dataclass(frozen=True)
class TriggerPlan:
    """The profile's trigger rules, prepared once per batch: the hot path asks one question
    per event ("can anything be due?") before doing any work."""

    profile: Profile
    recalls: tuple[RecallPoint, ...]
    first: int  # smallest idle time of a recall (a huge number when there is none)
    last: int

    @classmethod
    def of(cls, profile: Profile) -> TriggerPlan:
        th = profile.thresholds
        recalls = tuple(
            RecallPoint(
                idle_after(r.state, th) + r.delay,
                r.state,
                {"state": r.state, "recall": r.recall, "tier": r.tier},
            )
            for r in profile.triggers.recall
        )
        offsets = [r.offset for r in recalls]
        return cls(profile, recalls, min(offsets, default=_NEVER), max(offsets, default=_NEVER))


_NEVER = 1 << 62


def fire_due(uid: str, rec: UserRecord, after: int, until: int, plan: TriggerPlan, log: TriggerLog) -> None:
    """Fire what fell due in `(after, until]`: derived recalls, and every pending entry due by `until`."""
    la = rec.last_active
    pending = rec.pending  # kept sorted by (due, id): pending[0] is the next one due
    if (la + plan.first > until or la + plan.last <= after) and not (pending and pending[0].due <= until):
        return
    items: list[PendingTrigger] = []
    for offset, state, extra in plan.recalls:
        point = la + offset
        if after < point <= until:
            tid = trigger_id("recall", uid, f"{state}|{la}")
            items.append(PendingTrigger(point, tid, "recall", la, dict(extra)))
    profile = plan.profile
    rules = profile.triggers
    # Strictly in (due, id) order, a deferral included: it comes back at its resume time,
    # before anything due later, however the clock's advance was cut into windows.
    order = count()  # ties never reach the entries themselves
    queue = [(p.due, p.id, next(order), p) for p in (*items, *rec.pending) if p.due <= until]
    heapify(queue)
    rec.pending = [p for p in rec.pending if p.due > until]
    while queue:
        resumed = _decide(uid, rec, heappop(queue)[3], rules, profile, log)
        if resumed is None:
            continue
        if resumed.due <= until:
            heappush(queue, (resumed.due, resumed.id, next(order), resumed))
        else:
            rec.pending.append(resumed)
    rec.pending.sort(key=_due_order)


def _due_order(entry: PendingTrigger) -> tuple[int, str]:
    return entry.due, entry.id


def _decide(
    uid: str, rec: UserRecord, entry: PendingTrigger, rules: TriggerRules, profile: Profile, log: TriggerLog
) -> PendingTrigger | None:
    """Suppress, defer, cap or fire `entry`; a deferral is returned, to be decided at its resume time."""
    at, tid, kind, cause, extra = entry
    channel = rec.channel
    counts = log.counts
    origin = str(extra.get("state", "")) if kind == "recall" else ""

    def count(status: str) -> None:
        counts[ctr.trigger(kind, channel, status)] += 1
        if origin:
            counts[ctr.recall(origin, channel, status)] += 1

    if _suppressed(rec, kind, cause, extra):
        count("cancelled" if kind in ("renewal", "expiry") else "suppressed")
        return None
    if rules.quiet is not None:
        resume = quiet_end(at, rules.quiet)
        if resume is not None:
            first_due = extra.get("due", at)
            deferred = {**extra, "due": first_due, "deferred": True}
            count("deferred")
            return PendingTrigger(resume, tid, kind, cause, deferred)
    if rules.cap_max is not None:
        rec.sent = [t for t in rec.sent if t > at - rules.cap_window]
        if len(rec.sent) >= rules.cap_max:
            count("capped")
            return None
        rec.sent.append(at)
    holdout = in_holdout(uid, rules.holdout_percent)
    threshold = rules.advisor_revenue if rules.advisor_revenue is not None else profile.rfm.monetary
    advisor = rec.revenue >= threshold
    flags = (HOLDOUT if holdout else 0) | (ADVISOR if advisor else 0) | origin_bits(origin)
    rec.recent.append(FiredTrigger(tid, kind, at, flags))
    del rec.recent[:-RECENT_KEPT]
    count("held_out" if holdout else "sent")
    data = {k: v for k, v in extra.items() if k not in ("tier", "deferred", "due")}
    log.fired.append(
        Fired(
            tid, kind, uid, channel, at, int(extra.get("due", at)), str(extra["tier"]), holdout, advisor, data
        )
    )
    return None


def _suppressed(rec: UserRecord, kind: str, cause: int, extra: dict[str, Any]) -> bool:
    if kind == "recall":
        return bool(rec.last_active != cause)  # came back meanwhile (or a later idle period)
    if kind in ("renewal", "expiry"):
        return bool(rec.policies.get(extra["policy_id"]) != cause)  # renewed, replaced or ended
    if kind == "onboarding":
        return rec.orders > 0
    return False


def quiet_end(at: int, quiet: QuietHours) -> int | None:
    """The end of the quiet hours `at` falls in: the first moment after `at` at which the local
    clock shows a minute outside them (epoch ms), or None when `at` is not quiet.

    Worked out in integers with the zone's offset when the offset is the same at `at` and a day
    later: the end is less than a day away, so no transition lies between (a zone changes its
    offset at most once a day). Near a transition the clock is followed minute by minute, so
    an end in a skipped hour is the first minute after the gap and a repeated hour is quiet
    both times."""
    cal = _calendar(quiet.zone)
    offset = cal.offset_ms(at)
    if offset != cal.offset_ms(at + DAY_MS):
        return _quiet_end_near_transition(at, quiet, cal)
    local = at + offset
    minute = local // 60_000 % 1_440
    if not quiet.contains(minute):
        return None
    day = local - local % DAY_MS
    if quiet.start > quiet.end and minute >= quiet.start:
        day += DAY_MS  # wrapped past midnight: the quiet time ends tomorrow
    return day + quiet.end * 60_000 - offset


def _quiet_end_near_transition(at: int, quiet: QuietHours, cal: Calendar) -> int | None:
    t = at
    while quiet.contains((t + cal.offset_ms(t)) // 60_000 % 1_440):
        t = t - t % 60_000 + 60_000  # the next minute (offsets change on whole minutes)
    return None if t == at else t


@lru_cache(maxsize=16)
def _calendar(name: str) -> Calendar:
    return Calendar(name)


def schedule(
    uid: str, rec: UserRecord, ev: Event, tau: int, profile: Profile, revenue: bool, log: TriggerLog
) -> None:
    """What an applied event schedules or cancels: renewal reminders, expiry, onboarding."""
    rules = profile.triggers
    if revenue:
        if rec.pending and any(p.kind == "onboarding" for p in rec.pending):
            rec.pending = [p for p in rec.pending if p.kind != "onboarding"]
            log.counts[ctr.trigger("onboarding", rec.channel, "suppressed")] += 1
        props = ev.properties
        pid = props.get("policy_id") if props else None
        if rules.renewal_enabled and isinstance(pid, str) and 0 < len(pid) <= 128:
            _policy(uid, rec, pid, props.get("policy_end") if props else None, tau, rules, log)
    elif (
        rules.onboarding_enabled
        and not rec.onboarding
        and not rec.orders
        and ev.type in rules.onboarding_after
    ):
        rec.onboarding = ev.ts
        due = ev.ts + rules.onboarding_window
        key = str(ev.ts)
        extra = {"tier": rules.onboarding_tier, "after": ev.type}
        rec.pending.append(
            PendingTrigger(due, trigger_id("onboarding", uid, key), "onboarding", ev.ts, extra)
        )
        rec.pending.sort(key=_due_order)


def _policy(
    uid: str, rec: UserRecord, pid: str, raw_end: Any, tau: int, rules: TriggerRules, log: TriggerLog
) -> None:
    """An order or renewal of policy `pid`: cancel what was scheduled for it, schedule the new end."""
    end = parse_ts(raw_end) if raw_end is not None else None
    kept = []
    for p in rec.pending:
        if p.kind in ("renewal", "expiry") and p.extra.get("policy_id") == pid:
            log.counts[ctr.trigger(p.kind, rec.channel, "cancelled")] += 1
        else:
            kept.append(p)
    rec.pending = kept
    if not isinstance(end, int):
        rec.policies.pop(pid, None)
        return
    rec.policies[pid] = end
    for offset in rules.renewal_offsets:
        due = end - offset
        if due > tau:
            days = offset // 86_400_000
            extra = {"tier": rules.renewal_tier, "policy_id": pid, "policy_end": end, "days_before": days}
            tid = trigger_id("renewal", uid, f"{pid}|{end}|{offset}")
            rec.pending.append(PendingTrigger(due, tid, "renewal", end, extra))
    if end > tau:
        extra = {"tier": rules.expiry_tier, "policy_id": pid, "policy_end": end}
        rec.pending.append(
            PendingTrigger(end, trigger_id("expiry", uid, f"{pid}|{end}"), "expiry", end, extra)
        )
    rec.pending.sort(key=_due_order)


def attribute(
    rec: UserRecord, ev: Event, active: bool, revenue: bool, window: int, counts: Counter[str]
) -> None:
    """Outcomes of the user's recent triggers: outcome events naming one, and any activity or
    order within the attribution window after it (each outcome counted once per trigger)."""
    named = ev.properties.get("trigger_id") if ev.properties else None
    outcome_bit = OUTCOME_BITS.get(ev.type)
    if rec.recent[0].at + window < ev.ts:  # nothing can be attributed to those any more
        rec.recent = [item for item in rec.recent if item.at + window >= ev.ts]
    for i, (tid, kind, at, flags) in enumerate(rec.recent):
        if not at <= ev.ts <= at + window:
            continue
        add = 0
        if outcome_bit and named == tid:
            add |= outcome_bit
        if active and ev.ts > at:
            add |= OUTCOME_BITS["returned"]
        if revenue and ev.ts >= at:
            add |= OUTCOME_BITS["ordered"]
        new = add & ~flags
        if not new:
            continue
        rec.recent[i] = FiredTrigger(tid, kind, at, flags | new)
        group = "holdout" if flags & HOLDOUT else "treated"
        origin = origin_of(flags)
        for name, bit in OUTCOME_BITS.items():
            if new & bit:
                counts[ctr.trigger_outcome(kind, rec.channel, group, name)] += 1
                if origin:
                    counts[ctr.recall_outcome(origin, rec.channel, group, name)] += 1


def next_due(rec: UserRecord) -> int | None:
    """The earliest pending due time: the user's score in the partition's due index."""
    return rec.pending[0].due if rec.pending else None


def describe(rec: UserRecord) -> dict[str, Any]:
    """A user's scheduled and fired triggers, for `GET /users/{id}/triggers`."""
    scheduled = [
        {
            "id": tid,
            "kind": kind,
            "due": due,
            **{k: v for k, v in extra.items() if k != "due"},
        }
        for due, tid, kind, _cause, extra in sorted(rec.pending, key=_due_order)
    ]
    fired = []
    for tid, kind, at, flags in rec.recent:
        outcomes = [name for name, bit in OUTCOME_BITS.items() if flags & bit]
        fired.append(
            {
                "id": tid,
                "kind": kind,
                "at": at,
                "holdout": bool(flags & HOLDOUT),
                "advisor": bool(flags & ADVISOR),
                "outcomes": outcomes,
                **({"origin": origin_of(flags)} if origin_of(flags) else {}),
            }
        )
    return {"scheduled": scheduled, "fired": fired}
