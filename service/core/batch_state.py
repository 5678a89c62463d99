"""What a batch works with: the profile's rules worked out once, the users as they are
being applied, and what the batch will write.

Kept apart from the steps (service.core.batch for events and time, service.core.control_steps
for control messages) so that each step module sees the same state and none imports another.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from service.core.calendar import Calendar
from service.core.funnel import REGISTRATION, stage_steps
from service.core.indexes import IndexChanges
from service.core.lifecycle import Thresholds
from service.core.named_funnels import FunnelPlan
from service.core.profile import FunnelStage, Profile, Rfm
from service.core.records import UserRecord
from service.core.retention import RetentionRule
from service.core.triggers import TriggerLog, TriggerPlan
from service.core.value import rfm_class

IDENTIFY = "identify"  # the event type whose `properties.traits` state who the user is
OUTCOME_TYPES = frozenset({"message_delivered", "message_click", "payment_click", "paid"})
OTHER_TYPE = "other"
CHANNEL_COST = "channel_cost"  # acquisition cost of `channel` (amount); not a user's activity


def known_types(profile: Profile) -> frozenset[str]:
    """Event types counted under their own name; others count as `other` (bounded labels)."""
    return (
        profile.funnel_events
        | (profile.activity_types or frozenset())
        | profile.revenue_types
        | OUTCOME_TYPES
        | {"visit", "login", "register", "verify", "order", "renew"}
    )


@dataclass
class BatchResult(IndexChanges):
    """What one batch changes; the store turns it into one atomic commit."""

    records: dict[str, UserRecord] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    sums: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    watermark: int = 0
    channels: set[str] = field(default_factory=set)
    gaps: list[tuple[str, int]] = field(default_factory=list)  # (channel, gap ms) of each return
    conversions: list[tuple[int, int]] = field(default_factory=list)  # (stage index, ms since first seen)
    triggers: TriggerLog = field(default_factory=TriggerLog)
    deleted: set[str] = field(default_factory=set)  # erased users: their records go
    suppress: set[str] = field(default_factory=set)  # ids the suppression list gains
    unsuppress: set[str] = field(default_factory=set)  # ids it loses (restored)
    tombstones: dict[str, str] = field(default_factory=dict)  # merged id -> the id it went into
    # messages to send to the events topic before the commit, as (key user id, value):
    # merge requests and records, and events of merged ids sent on under their new id
    outgoing: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass(frozen=True)
class BatchRules:
    """The profile's rules as one batch uses them, worked out once."""

    profile: Profile
    th: Thresholds
    rfm: Rfm
    calendar: Calendar
    utc: bool  # days are `ts // DAY_MS`: the per-event day offset skips the calendar's call
    retention: RetentionRule
    funnel: tuple[FunnelStage, ...]
    steps: dict[str, frozenset[int]]  # funnel event type -> counts that complete a stage
    counted_types: frozenset[str]  # funnel events and registration: counted per user
    revenue_types: frozenset[str]
    schedules: frozenset[str]  # event types that schedule onboarding
    labels: frozenset[str]
    plan: TriggerPlan
    attribution: int
    keep_first: int
    funnels: FunnelPlan | None  # the named funnels (None: none)

    @classmethod
    def of(cls, profile: Profile, first_index_window: int | None) -> BatchRules:
        th = profile.thresholds
        trig = profile.triggers
        calendar = profile.calendar
        retention = RetentionRule.of(profile.retention_days, calendar)
        return cls(
            profile,
            th,
            profile.rfm,
            calendar,
            calendar.is_utc,
            retention,
            profile.funnel,
            stage_steps(profile.funnel),
            profile.funnel_events | {REGISTRATION},
            profile.revenue_types,
            trig.onboarding_after if trig.onboarding_enabled else frozenset(),
            known_types(profile),
            TriggerPlan.of(profile),
            trig.attribution_window,
            max(first_index_window or 0, th.new_window),
            FunnelPlan.of(profile.funnels, profile.calendar),
        )


@dataclass
class Working:
    """The batch's users as it applies them: `live` holds each one touched (None: none, or
    gone), with what the end of the batch needs to place it in the indexes."""

    stored: Mapping[str, UserRecord | None]
    rfm: Rfm
    live: dict[str, UserRecord | None] = field(default_factory=dict)
    class_before: dict[str, int] = field(default_factory=dict)  # RFM class as stored
    had_pending: set[str] = field(default_factory=set)  # stored with pending triggers
    dirty_active: set[str] = field(default_factory=set)  # moved in the active / RFM indexes
    dirty_first: set[str] = field(default_factory=set)  # moved in the first-seen index

    def current(self, uid: str) -> UserRecord | None:
        """The user's record as the batch has it so far (a copy of the stored one at first)."""
        if uid in self.live:
            return self.live[uid]
        found = self.stored.get(uid)
        rec = self.live[uid] = found.copy() if found is not None else None
        self.class_before[uid] = rfm_class(found, self.rfm) if found is not None else 0
        if found is not None and found.pending:
            self.had_pending.add(uid)
        return rec
