"""A direct, independent computation of what the service must report for an event history.

Written the obvious way (sort, loop, dictionaries), sharing nothing with the worker but
the definition of a stage (`state_at`, DESIGN.md §2.2 verbatim), so integration tests
can compare the service's numbers with it exactly.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from service.core.events import validate_event
from service.core.lifecycle import state_at
from service.core.profile import Profile


@dataclass
class RefUser:
    first_seen: int
    last_active: int
    channel: str | None = None
    counts: Counter[str] = field(default_factory=Counter)
    orders: int = 0
    revenue: float = 0.0


def reference(events: list[dict[str, Any]], profile: Profile) -> dict[str, RefUser]:
    """Users after applying every distinct valid event (first occurrence of each event_id)."""
    seen: set[str] = set()
    users: dict[str, RefUser] = {}
    for raw in events:
        ev = validate_event(raw)
        if isinstance(ev, str) or ev.event_id in seen:
            continue
        seen.add(ev.event_id)
        user = users.get(ev.user_id)
        if user is None:
            if not profile.is_activity(ev.type):
                continue
            user = users[ev.user_id] = RefUser(ev.ts, ev.ts)
        user.first_seen = min(user.first_seen, ev.ts)
        if profile.is_activity(ev.type):
            user.last_active = max(user.last_active, ev.ts)
        if user.channel is None and ev.channel:
            user.channel = ev.channel
        user.counts[ev.type] += 1
        if ev.type in profile.revenue_types:
            user.orders += 1
            user.revenue += ev.amount or 0.0
    return users


def stage_of(user: RefUser, profile: Profile) -> int:
    reached = -1
    for i, stage in enumerate(profile.funnel):
        if user.counts[stage.event] >= stage.nth:
            reached = i
    return reached


def lifecycle_counts(
    users: dict[str, RefUser], now: int, profile: Profile, channel: str | None = None
) -> dict[str, int]:
    counts = dict.fromkeys(("new", "retained", "silent", "churned", "dead"), 0)
    for user in users.values():
        if channel is None or (user.channel or "-") == channel:
            counts[state_at(user.first_seen, user.last_active, now, profile.thresholds).value] += 1
    return counts


def funnel_users(users: dict[str, RefUser], profile: Profile, channel: str | None = None) -> list[int]:
    out = [0] * len(profile.funnel)
    for user in users.values():
        if channel is None or (user.channel or "-") == channel:
            for k in range(stage_of(user, profile) + 1):
                out[k] += 1
    return out
