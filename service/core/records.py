"""A user's stored record and its compact encoding (one short JSON array per user).

The record holds only what cannot be derived: the lifecycle stage is computed from
`first_seen`/`last_active` at read time. `seen_until` is the clock up to which this
user's time-driven transitions have already been counted, so a sweep and a later
event never count the same crossing twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from service.core import daysets

NO_CHANNEL = "-"
_INT_DAYS = 1 << 63  # a longer activity bitmap (retention days past 62) is written as hex text


class PendingTrigger(NamedTuple):
    """A scheduled trigger (service.core.triggers), stored as `[due, id, kind, cause, extra]`.

    Immutable: a change (a deferral) is a new entry. `extra` is never changed in place either.
    """

    due: int  # when it falls due (epoch ms)
    id: str  # deterministic, so a replay schedules the same trigger
    kind: str  # recall, renewal, expiry or onboarding
    cause: int  # what it is about, checked again when due: last_active, policy end, or the event ts
    extra: dict[str, Any]  # published data, plus `tier`, and `due`/`deferred` once deferred


class FiredTrigger(NamedTuple):
    """A trigger that fired (sent or held out), stored as `[id, kind, at, flags]`, kept for
    attribution of the user's next events."""

    id: str
    kind: str
    at: int  # when it fired
    flags: int  # holdout, advisor, outcome and (recalls) origin bits (service.core.triggers)


def _as_array(obj: Any) -> Any:
    """orjson's fallback for the entries above: a JSON array, as they were always stored."""
    if isinstance(obj, tuple):
        return tuple(obj)
    raise TypeError(f"{type(obj).__name__} is not part of a record")


@dataclass(init=False)
class UserRecord:
    first_seen: int
    last_active: int
    seen_until: int
    channel: str = NO_CHANNEL
    stage: int = -1
    orders: int = 0
    revenue: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    retained: int = 0  # bit i set: active on day retention_days[i] after the first-seen day
    # triggers (service.core.triggers); packed only when one of them is set
    pending: list[PendingTrigger] = field(default_factory=list)  # sorted by (due, id)
    sent: list[int] = field(default_factory=list)  # times of recent sends, for the frequency cap
    policies: dict[str, int] = field(default_factory=dict)  # policy id -> policy_end
    recent: list[FiredTrigger] = field(default_factory=list)
    onboarding: int = 0  # when the onboarding window started (0: never)
    days: int = 0  # bit k: active on the first-seen day + k (service.core.retention)
    traits: dict[str, Any] = field(default_factory=dict)  # the profile's named identify traits
    # event type -> its earliest times (epoch ms, sorted), as many as the named funnels need
    # (service.core.named_funnels); stored as offsets from first_seen. Lists are replaced, not changed.
    firsts: dict[str, list[int]] = field(default_factory=dict)
    # bit k: active on local day (first_seen's) + k, the whole life (service.core.interval_lifecycle)
    active_days: int = 0

    # written out, not generated: compiled, a record is made in a fraction of the time (see `Event`)
    def __init__(
        self,
        first_seen: int,
        last_active: int,
        seen_until: int,
        channel: str = NO_CHANNEL,
        stage: int = -1,
        orders: int = 0,
        revenue: float = 0.0,
        counts: dict[str, int] | None = None,
        retained: int = 0,
        pending: list[PendingTrigger] | None = None,
        sent: list[int] | None = None,
        policies: dict[str, int] | None = None,
        recent: list[FiredTrigger] | None = None,
        onboarding: int = 0,
        days: int = 0,
        traits: dict[str, Any] | None = None,
        firsts: dict[str, list[int]] | None = None,
        active_days: int = 0,
    ) -> None:
        self.first_seen = first_seen
        self.last_active = last_active
        self.seen_until = seen_until
        self.channel = channel
        self.stage = stage
        self.orders = orders
        self.revenue = revenue
        self.counts = {} if counts is None else counts
        self.retained = retained
        self.pending = [] if pending is None else pending
        self.sent = [] if sent is None else sent
        self.policies = {} if policies is None else policies
        self.recent = [] if recent is None else recent
        self.onboarding = onboarding
        self.days = days
        self.traits = {} if traits is None else traits
        self.firsts = {} if firsts is None else firsts
        self.active_days = active_days

    def pack(self) -> bytes:
        # whole amounts as ints (shorter), but only where orjson can write them (64-bit ints)
        whole = self.revenue.is_integer() and abs(self.revenue) < 2**53
        revenue: float | int = int(self.revenue) if whole else self.revenue
        fields = [
            self.first_seen,
            self.last_active,
            self.seen_until,
            self.channel,
            self.stage,
            self.orders,
            revenue,
            self.counts,
            self.retained,
        ]
        # The tail: days alone (1 field), the 5 trigger fields (5), both (6), or with the
        # traits last (7: days and the trigger fields then always written). Funnel times come
        # after those, after days (2) or after days, triggers and traits (8); then the active
        # days, the only list that can end a record (service.core.daysets).
        firsts = self.firsts
        triggers = self.pending or self.sent or self.policies or self.recent or self.onboarding
        if self.days or self.traits or firsts:
            fields.append(self.days if self.days < _INT_DAYS else format(self.days, "x"))
        if triggers or self.traits:
            fields += (self.pending, self.sent, self.policies, self.recent, self.onboarding)
            if self.traits or firsts:
                fields.append(self.traits)
        if firsts:
            base = self.first_seen
            fields.append(
                {t: ts[0] - base if len(ts) == 1 else [x - base for x in ts] for t, ts in firsts.items()}
            )
        if self.active_days:
            fields.append(daysets.encode(self.active_days))
        if triggers or self.traits:
            return orjson.dumps(fields, default=_as_array)
        return orjson.dumps(fields)

    @classmethod
    def unpack(cls, raw: bytes | str) -> UserRecord:
        return cls.from_fields(orjson.loads(raw))

    @classmethod
    def from_fields(cls, fields: list[Any]) -> UserRecord:
        """From the decoded JSON array (`pack`'s form)."""
        f, la, su, ch, st, orders, revenue, counts, retained, *tail = fields
        active_days = daysets.decode(tail.pop()) if tail and isinstance(tail[-1], list) else 0
        firsts: dict[str, list[int]] = {}
        if len(tail) in (2, 8):
            *tail, offsets = tail
            firsts = {t: [f + x for x in o] if isinstance(o, list) else [f + o] for t, o in offsets.items()}
        days = 0
        if len(tail) in (1, 6, 7):
            raw_days, *tail = tail
            days = raw_days if isinstance(raw_days, int) else int(raw_days, 16)
        rec = cls(f, la, su, ch, st, orders, float(revenue), counts, retained)
        rec.days = days
        rec.firsts = firsts
        rec.active_days = active_days
        if len(tail) == 6:
            *tail, rec.traits = tail
        if tail:
            pending, rec.sent, rec.policies, recent, rec.onboarding = tail
            rec.pending = [PendingTrigger(*p) for p in pending]
            rec.recent = [FiredTrigger(*r) for r in recent]
        return rec

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        """Copies and pickles go through the stored form (a compiled class cannot be made
        empty and filled in, which is how they would do it otherwise)."""
        return UserRecord.unpack, (self.pack(),)

    def copy(self) -> UserRecord:
        return UserRecord(
            self.first_seen,
            self.last_active,
            self.seen_until,
            self.channel,
            self.stage,
            self.orders,
            self.revenue,
            dict(self.counts),
            self.retained,
            list(self.pending),  # entries are immutable
            list(self.sent),
            dict(self.policies),
            list(self.recent),
            self.onboarding,
            self.days,
            dict(self.traits),
            dict(self.firsts),  # the lists are replaced, never changed in place
            self.active_days,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "first_seen": self.first_seen,
            "last_active": self.last_active,
            "channel": None if self.channel == NO_CHANNEL else self.channel,
            "funnel_stage_index": self.stage,
            "orders": self.orders,
            "revenue": self.revenue,
            "event_counts": dict(self.counts),
            "traits": dict(self.traits),
        }
