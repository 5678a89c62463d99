"""What a fault-injection run is judged by: the service's final state, counters and
triggers against what the event log alone says they must be.

State and counters come from `tests.reference` (written independently of the worker).
Expected triggers come from the pure core applied to each partition's log in one batch
per delivery phase (the unit properties show any batching and sweeping gives the same);
the trigger topic is read as a downstream messaging system reads it, from the start.
Differences are collected as readable lines, not asserted one by one, so a run reports
how many facts differ (the figure the issue asks for) and which.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml
from kafka import KafkaConsumer, TopicPartition

from service.core import counters as ctr
from service.core.batch import CHANNEL_COST, OTHER_TYPE, apply_events, known_types, sweep
from service.core.events import Event, validate_event
from service.core.partitioning import partition_for
from service.core.profile import Profile, parse_profile
from service.core.records import UserRecord
from service.keys import all_partitions
from service.processor import OUTBOX_HEADER
from service.queries import Queries
from service.redis_client import redis_client
from service.store import as_text
from tests import reference as ref
from tests.processes import sync_redis
from tests.stack import T0, Stack, make_stack

PROFILE_YAML = """
name: faults
lifecycle: {new_window: 3d, silent_after: 3d, churn_after: 14d, dead_after: 60d}
activity_types: [visit, login, view, register, verify, order, renew, payment_click, paid, message_click]
revenue_types: [order, renew]
funnel:
  - {name: visit, event: visit}
  - {name: register, event: register}
  - {name: first_order, event: order}
  - {name: renewal, event: renew}
triggers:
  recall:
    silent: {delay: 0d, tier: push_nudge}
    churned: {delay: 0d, tier: comeback_coupon}
    dead: {delay: 0d, tier: login_bonus}
  renewal: {reminders: [30d, 7d, 1d]}
  onboarding: {after: [register], window: 2d}
  holdout_percent: 10
"""
"""A daily app's thresholds with insurance-style policies: the generator then writes renewals,
so recalls, renewal reminders, expiries and onboarding all fire (no quiet hours or cap, so
every recall is due exactly where the reference says a user entered its state)."""


def fault_stack(broker: Any, redis_url: str, workdir: Path, partitions: int) -> Stack:
    """A stack on `PROFILE_YAML`, event clock, its own topics, keys and group."""
    workdir.mkdir(parents=True, exist_ok=True)
    profile = workdir / "faults-profile.yaml"
    profile.write_text(PROFILE_YAML)
    return make_stack(broker, redis_url, workdir, partitions, LIFECYCLE_PROFILE=str(profile))


def trigger_history(users: int, days: int = 90, seed: int = 11) -> list[dict[str, Any]]:
    """A generated history in time order: sessions, core path, lapses and returns, policies."""
    from service.generator import generate

    return list(generate(users=users, start_ms=T0, days=days, seed=seed, profile=fault_profile()))


def fault_profile() -> Profile:
    return parse_profile(yaml.safe_load(PROFILE_YAML), source="faults profile")


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


# --- triggers, as a downstream consumer sees them -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivered:
    """One CloudEvent on the trigger topic, where it was and which outbox entry it came from."""

    partition: int
    offset: int
    id: str
    kind: str
    subject: str
    outbox_id: str


def read_trigger_topic(bootstrap: str, topic: str, partitions: int) -> list[Delivered]:
    """Everything on the trigger topic, from the beginning (plain kafka-python, no group)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=5000)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out = []
        for m in consumer:
            ce = orjson.loads(m.value)
            headers = {k: v.decode() for k, v in m.headers}
            out.append(
                Delivered(
                    m.partition, m.offset, ce["id"], ce["data"]["kind"], ce["subject"], headers[OUTBOX_HEADER]
                )
            )
        return out
    finally:
        consumer.close()


@dataclass(frozen=True, slots=True)
class Expected:
    """What the pure core fires and counts for a delivery history."""

    fired: dict[str, tuple[str, str]]  # trigger id -> (kind, user)
    transitions: Counter[str]


def expected_by_core(
    phases: Sequence[Sequence[dict[str, Any]]], profile: Profile, partitions: int
) -> Expected:
    """The core on each partition's events, one batch per phase in delivery order, each phase
    followed by a sweep to the partition's event clock (what the worker reaches once a phase
    is applied and swept). A single phase in time order is the in-order history."""
    records: dict[int, dict[str, UserRecord]] = defaultdict(dict)
    clock: dict[int, int] = {}
    fired: dict[str, tuple[str, str]] = {}
    transitions: Counter[str] = Counter()
    seen: set[str] = set()
    for phase in phases:
        by_partition: dict[int, list[Event]] = defaultdict(list)
        for ev in distinct_valid(phase, seen):
            by_partition[partition_for(ev.user_id, partitions)].append(ev)
        for p, evs in by_partition.items():
            swept = clock.get(p, min(ev.ts for ev in evs))
            result = apply_events(dict(records[p]), evs, swept, profile)
            records[p].update(result.records)
            now = max(swept, *(ev.ts for ev in evs))
            swept_result = sweep(records[p], swept, now, profile)
            records[p].update(swept_result.records)
            clock[p] = now
            for f in (*result.triggers.fired, *swept_result.triggers.fired):
                fired[f.id] = (f.kind, f.user_id)
            for counts in (result.counts, swept_result.counts):
                transitions.update({k: v for k, v in counts.items() if k.startswith("tr|")})
    return Expected(fired, transitions)


@dataclass(slots=True)
class TriggerAudit:
    """A downstream consumer's count: every expected id once, nothing else."""

    expected: int
    delivered: int
    missing: list[str]
    duplicates: list[str]
    unexpected: list[str]
    misplaced: list[str]  # on another partition than its user's
    relay_out_of_order: list[str]  # an outbox entry relayed twice or out of order on its partition

    @property
    def clean(self) -> bool:
        return not (
            self.missing or self.duplicates or self.unexpected or self.misplaced or self.relay_out_of_order
        )


def audit_triggers(delivered: Sequence[Delivered], expected: dict[str, Any], partitions: int) -> TriggerAudit:
    ids = Counter(d.id for d in delivered)
    last: dict[int, tuple[int, int]] = {}
    out_of_order = []
    for d in sorted(delivered, key=lambda d: (d.partition, d.offset)):
        sid = d.outbox_id.rsplit("/", 1)[1]
        ms, _, seq = sid.partition("-")
        pos = (int(ms), int(seq or 0))
        if d.partition in last and pos <= last[d.partition]:
            out_of_order.append(f"{d.partition}@{d.offset}:{sid}")
        last[d.partition] = pos
    return TriggerAudit(
        expected=len(expected),
        delivered=len(delivered),
        missing=sorted(set(expected) - set(ids)),
        duplicates=sorted(i for i, n in ids.items() if n > 1),
        unexpected=sorted(set(ids) - set(expected)),
        misplaced=[d.id for d in delivered if partition_for(d.subject, partitions) != d.partition],
        relay_out_of_order=out_of_order,
    )


# --- state and counters ---------------------------------------------------------------------------------


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


def recalls_by_reference(transitions: Counter[str]) -> int:
    """Recalls an in-order history must fire, from `tests.reference` alone: with recall delays
    0, no quiet hours and no cap (`PROFILE_YAML`), one per entry into silent, churned or dead."""
    return sum(n for k, n in transitions.items() if k.split("|")[2] in ("silent", "churned", "dead"))


def partition_generations(stack: Stack) -> dict[int, int]:
    """Each partition's owner generation in Redis meta: how many times it was claimed."""
    s = stack.settings
    client = sync_redis(s.redis_url, s.redis_cluster)
    try:
        return {
            k.partition: int(client.hget(k.meta, "gen") or 0)
            for k in all_partitions(s.key_prefix, s.partitions)
        }
    finally:
        client.close()


def applied_total(stack: Stack) -> int:
    """Messages committed to Redis so far, over all partitions (the applied offsets)."""
    s = stack.settings
    client = sync_redis(s.redis_url, s.redis_cluster)
    try:
        return sum(
            int(client.hget(k.meta, "offset") or -1) + 1 for k in all_partitions(s.key_prefix, s.partitions)
        )
    finally:
        client.close()


def outbox_length(stack: Stack) -> int:
    """Fired triggers committed but not yet relayed, over all partitions."""
    s = stack.settings
    client = sync_redis(s.redis_url, s.redis_cluster)
    try:
        return sum(int(client.xlen(k.outbox)) for k in all_partitions(s.key_prefix, s.partitions))
    finally:
        client.close()


def paced_publish(
    stack: Stack, events: list[dict[str, Any]], seconds: float, parts: int = 8
) -> threading.Thread:
    """Publish `events` in `parts` pieces spread over `seconds`, in the background: a stream."""

    def run() -> None:
        step = max(1, -(-len(events) // parts))
        for i in range(0, len(events), step):
            stack.publish(events[i : i + step])
            time.sleep(seconds / parts)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread
