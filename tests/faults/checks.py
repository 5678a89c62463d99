"""The end state of a fault-injection run against `tests.reference`: every user record, the
lifecycle and funnel counts and the counters, computed from the delivered events alone.

Differences are collected as readable lines, not asserted one by one, so a run reports
how many facts differ (the figure a fault run reports) and which.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from service.core import counters as ctr
from service.core.batch_state import CHANNEL_COST, OTHER_TYPE, known_types
from service.core.events import Event, validate_event
from service.core.records import UserRecord
from service.storage.client import as_text, redis_client
from service.storage.keys import all_partitions
from service.storage.queries import Queries
from tests import reference as ref
from tests.processes import sync_redis
from tests.stack import Stack


def distinct_valid(events: Sequence[dict[str, Any]], seen: set[str] | None = None) -> list[Event]:
    """The events the service must apply, in delivery order: valid, first occurrence of each id."""
    seen = set() if seen is None else seen
    out = []
    for raw in events:
        ev = validate_event(raw)
        if isinstance(ev, Event) and ev.event_id not in seen:
            seen.add(ev.event_id)
            out.append(ev)
    return out


@dataclass(slots=True)
class StateCheck:
    users: int = 0
    facts: int = 0  # compared values: per-user fields, state counts, funnel stages, counters
    mismatches: list[str] = field(default_factory=list)

    def same(self, what: str, got: Any, want: Any) -> None:
        self.facts += 1
        equal = (
            math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-6) if isinstance(want, float) else got == want
        )
        if not equal:
            self.mismatches.append(f"{what}: got {got!r}, want {want!r}")


async def check_state(
    stack: Stack,
    delivered_events: Sequence[dict[str, Any]],
    transitions: Counter[str],
    duplicates: int,
) -> StateCheck:
    """Every user record, the lifecycle and funnel counts, and the counters, against the
    reference of the events in delivery order (first occurrence of each id)."""
    s = stack.settings
    profile = s.loaded_profile
    events = [ev.to_json() for ev in distinct_valid(delivered_events)]
    users = ref.reference(events, profile)
    check = StateCheck(users=len(users))

    stored: dict[str, UserRecord] = {}
    client = sync_redis(s.redis_url, s.redis_cluster)
    try:
        for k in all_partitions(s.key_prefix, s.partitions):
            for uid, raw in client.hgetall(k.users).items():
                stored[as_text(uid)] = UserRecord.unpack(raw)
        outbox = sum(int(client.xlen(k.outbox)) for k in all_partitions(s.key_prefix, s.partitions))
    finally:
        client.close()
    check.same("users stored", sorted(stored), sorted(users))
    check.same("outbox entries left", outbox, 0)
    for uid, want in users.items():
        got = stored.get(uid)
        if got is None:
            continue
        check.same(f"{uid}.first_seen", got.first_seen, want.first_seen)
        check.same(f"{uid}.last_active", got.last_active, want.last_active)
        check.same(f"{uid}.channel", got.to_json()["channel"], want.channel)
        check.same(f"{uid}.orders", got.orders, want.orders)
        check.same(f"{uid}.revenue", got.revenue, float(want.revenue))
        check.same(f"{uid}.stage", got.stage, ref.stage_of(want, profile))

    redis = redis_client(s)
    try:
        queries = Queries(redis, s.key_prefix, s.partitions, profile, s.clock)
        now = await queries.now_ms()
        check.same("clock", now, max(ev["ts"] for ev in events))
        check.same(
            "lifecycle", (await queries.lifecycle())["counts"], ref.lifecycle_counts(users, now, profile)
        )
        funnel = [st["users"] for st in (await queries.funnel())["stages"]]
        check.same("funnel", funnel, ref.funnel_users(users, profile))
        counters = await queries.counters()
    finally:
        await redis.aclose()

    got_tr = {k: int(v) for k, v in counters.items() if k.startswith("tr|") and v}
    for key in sorted(set(got_tr) | set(transitions)):
        check.same(key, got_tr.get(key, 0), transitions.get(key, 0))
    labels = known_types(profile)
    by_type = Counter(ctr.event_type(e["type"] if e["type"] in labels else OTHER_TYPE) for e in events)
    for key in sorted(set(by_type) | {k for k in counters if k.startswith("ev|")}):
        check.same(key, int(counters.get(key, 0)), by_type.get(key, 0))
    applied = sum(sum(u.counts.values()) for u in users.values())
    applied += sum(1 for e in events if e["type"] == CHANNEL_COST)
    check.same(ctr.APPLIED, int(counters.get(ctr.APPLIED, 0)), applied)
    check.same(ctr.DUPLICATES, int(counters.get(ctr.DUPLICATES, 0)), duplicates)
    orders = sum(int(v) for k, v in counters.items() if k.startswith("orders|"))
    check.same("orders", orders, sum(u.orders for u in users.values()))
    return check
