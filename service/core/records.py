"""A user's stored record and its compact encoding (one short JSON array per user).

The record holds only what cannot be derived: the lifecycle stage is computed from
`first_seen`/`last_active` at read time. `seen_until` is the clock up to which this
user's time-driven transitions have already been counted, so a sweep and a later
event never count the same crossing twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

NO_CHANNEL = "-"
_INT_DAYS = 1 << 63  # a longer activity bitmap (retention days past 62) is written as hex text


@dataclass(slots=True)
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
    pending: list[list[Any]] = field(default_factory=list)  # scheduled: [due, id, kind, cause, extra]
    sent: list[int] = field(default_factory=list)  # times of recent sends, for the frequency cap
    policies: dict[str, int] = field(default_factory=dict)  # policy id -> policy_end
    recent: list[list[Any]] = field(default_factory=list)  # fired: [id, kind, at, flags]
    onboarding: int = 0  # when the onboarding window started (0: never)
    days: int = 0  # bit k: active on the first-seen day + k (service.core.retention)

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
        if self.days:  # a tail of 1 or 6 fields starts with it; older records have 0 or 5
            fields.append(self.days if self.days < _INT_DAYS else format(self.days, "x"))
        if self.pending or self.sent or self.policies or self.recent or self.onboarding:
            fields += (self.pending, self.sent, self.policies, self.recent, self.onboarding)
        return orjson.dumps(fields)

    @classmethod
    def unpack(cls, raw: bytes | str) -> UserRecord:
        return cls.from_fields(orjson.loads(raw))

    @classmethod
    def from_fields(cls, fields: list[Any]) -> UserRecord:
        """From the decoded JSON array (`pack`'s form)."""
        f, la, su, ch, st, orders, revenue, counts, retained, *tail = fields
        days = 0
        if len(tail) in (1, 6):
            raw_days, *tail = tail
            days = raw_days if isinstance(raw_days, int) else int(raw_days, 16)
        rec = cls(f, la, su, ch, st, orders, float(revenue), counts, retained, *tail)
        rec.days = days
        return rec

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
            [list(p) for p in self.pending] if self.pending else [],
            list(self.sent),
            dict(self.policies),
            [list(r) for r in self.recent] if self.recent else [],
            self.onboarding,
            self.days,
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
        }
