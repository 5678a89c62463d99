"""Triggers as a downstream messaging system sees them, and what it must see.

The topic is read from the start with plain kafka-python. The expected triggers come from
the pure core applied to each partition's log in one batch per delivery phase (the unit
properties show any batching and sweeping gives the same); the recalls are also counted
from `tests.reference` alone, independently of the core.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from kafka import KafkaConsumer, TopicPartition

from service.core.batch import apply_events, sweep
from service.core.events import Event
from service.core.partitioning import partition_for
from service.core.profile import Profile
from service.core.records import UserRecord
from service.worker.outgoing import OUTBOX_HEADER
from tests.faults.checks import distinct_valid


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


def recalls_by_reference(transitions: Counter[str]) -> int:
    """Recalls an in-order history must fire, from `tests.reference` alone: with recall delays
    0, no quiet hours and no cap (`PROFILE_YAML`), one per entry into silent, churned or dead."""
    return sum(n for k, n in transitions.items() if k.split("|")[2] in ("silent", "churned", "dead"))
