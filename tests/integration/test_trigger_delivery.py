"""Triggers for real: a worker against a real broker and Redis, read back as a downstream
messaging system would (plain kafka-python), across `kill -9` restarts of the worker.

Each trigger kind is checked at its exact event time, then the whole set on the topic is
compared with the pure core applied to the same events (one batch and one sweep per
partition), which the unit properties show is what any batching and sweeping gives.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from aiokafka import AIOKafkaProducer
from cloudevents.core.bindings.kafka import KafkaMessage, from_kafka_event
from kafka import KafkaConsumer, TopicPartition
from redis.asyncio import Redis

from service.api.app import create_api
from service.core.batch import apply_events, sweep
from service.core.durations import DAY_MS
from service.core.events import Event, validate_event
from service.core.instants import iso_ms
from service.core.partitioning import partition_for
from service.core.profile import Profile, load_profile
from service.core.records import UserRecord
from service.core.triggers import Fired, in_holdout, trigger_id
from service.kafka.tail import last_header_values
from service.settings import Settings
from service.storage.keys import all_partitions
from service.storage.store import RedisStore
from service.worker.outgoing import OUTBOX_HEADER, Outgoing
from service.worker.processor import PartitionProcessor
from tests.processes import wait_for
from tests.stack import PARTITIONS, Stack
from tests.unit.test_schemas import validator

pytestmark = pytest.mark.integration

HOUR = 3_600_000
T0 = 1_699_963_200_000  # 2023-11-14T12:00:00Z: noon, outside the quiet hours
END = T0 + 20 * DAY_MS

PROFILE_YAML = """
name: trig_test
lifecycle: {new_window: 1d, silent_after: 3d, churn_after: 14d, dead_after: 60d}
activity_types: [visit, register, order, renew, message_click, payment_click, paid]
revenue_types: [order, renew]
funnel:
  - {name: visit, event: visit}
  - {name: register, event: register}
  - {name: first_order, event: order}
rfm: {monetary: 1000}
triggers:
  recall:
    silent: {tier: nudge}
    churned: {tier: coupon}
    dead: {tier: login_bonus}
  renewal: {reminders: [7d, 1d]}
  onboarding: {after: [register], window: 2d}
  frequency_cap: {max: 3, per: 7d}
  quiet_hours: {start: "22:00", end: "08:00", time_zone: UTC}
  holdout_percent: 10
  attribution_window: 3d
"""


def e(eid: str, uid: str, ts: int, etype: str = "visit", **kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"event_id": eid, "user_id": uid, "type": etype, "ts": ts}
    if "amount" in kw:
        out["amount"] = kw.pop("amount")
    if kw:
        out["properties"] = kw
    return out


def scenario() -> list[dict[str, Any]]:
    d = DAY_MS
    out = [
        e("r1-a", "r1", T0),  # recalls: silent at +3d, churned at +14d
        e("r2-a", "r2", T0),
        e("r2-b", "r2", T0 + 4 * d),  # came back: silent +3d, again +7d, churned +18d
        e("q1-a", "q1", T0 + 11 * HOUR),  # 23:00 UTC: recalls due in quiet hours, sent at 08:00
        e("p2-a", "p2", T0, "order", amount=100.0, policy_id="P2", policy_end=T0 + 10 * d),
        e("p2-b", "p2", T0 + 5 * d, "renew", amount=100.0, policy_id="P2", policy_end=T0 + 375 * d),
        e("o1-a", "o1", T0, "register"),  # onboarding at +2d
        e("o2-a", "o2", T0, "register"),
        e("o2-b", "o2", T0 + d, "order", amount=5.0),  # ordered first: suppressed
        e("c1-a", "c1", T0, "order", amount=10.0, policy_id="P3", policy_end=T0 + 8 * d),
        e("c1-b", "c1", T0, "order", amount=10.0, policy_id="P4", policy_end=T0 + 9 * d),
    ]
    out += [e(f"h{i}", f"h{i}", T0 + HOUR, "register") for i in range(300)]  # the holdout rate
    # outcomes of x1's silent recall (due T0 + 3d), reported by the messaging system
    x1 = trigger_id("recall", "x1", f"silent|{T0}")
    out += [
        e("x1-a", "x1", T0),
        e("x1-b", "x1", T0 + 3 * d + HOUR, "message_delivered", trigger_id=x1),
        e("x1-c", "x1", T0 + 3 * d + 2 * HOUR, "message_click", trigger_id=x1),
        e("x1-d", "x1", T0 + 3 * d + 3 * HOUR, "paid", trigger_id=x1),
    ]
    return sorted(out, key=lambda ev: int(ev["ts"]))  # a product's stream: in time order


def ticks(at: int) -> list[dict[str, Any]]:
    """One event per partition at `at`: in event-clock mode each partition's clock is its own."""
    out, p, i = [], set(), 0
    while len(p) < PARTITIONS:
        uid = f"tick-{i}"
        if partition_for(uid, PARTITIONS) not in p:
            p.add(partition_for(uid, PARTITIONS))
            out.append(e(f"tick-{i}", uid, at))
        i += 1
    return out


def expected_fired(events: list[dict[str, Any]], profile: Profile) -> list[Fired]:
    """The pure core on each partition's events: one batch, then a sweep to its clock."""
    by_partition: dict[int, list[Event]] = defaultdict(list)
    for raw in events:
        ev = validate_event(raw)
        assert isinstance(ev, Event)
        by_partition[partition_for(ev.user_id, PARTITIONS)].append(ev)
    fired: list[Fired] = []
    for evs in by_partition.values():
        start = min(ev.ts for ev in evs)
        result = apply_events({}, evs, start, profile)
        fired += result.triggers.fired
        records: dict[str, UserRecord] = result.records
        fired += sweep(records, start, max(ev.ts for ev in evs), profile).triggers.fired
    return fired


def consume_all(bootstrap: str, topic: str) -> list[tuple[bytes | None, dict[str, Any], dict[str, bytes]]]:
    """Everything on the topic, as a downstream system reads it: key, CloudEvent, headers."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=3000)
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        return [(m.key, orjson.loads(m.value), dict(m.headers)) for m in consumer]
    finally:
        consumer.close()


def outbox_sizes(settings: Settings) -> list[int]:
    client = redis.Redis.from_url(settings.redis_url)
    try:
        return [int(client.xlen(k.outbox)) for k in all_partitions(settings.key_prefix, PARTITIONS)]
    finally:
        client.close()


def with_profile(stack: Stack, tmp_path: Path) -> Settings:
    path = tmp_path / "trig.yaml"
    path.write_text(PROFILE_YAML)
    stack.env["LIFECYCLE_PROFILE"] = str(path)
    return Settings(**{k.removeprefix("LIFECYCLE_").lower(): v for k, v in stack.env.items()})


async def test_triggers_fire_once_at_their_event_time_and_reach_downstream_once(
    stack: Stack, tmp_path: Path
) -> None:
    s = with_profile(stack, tmp_path)
    profile = load_profile(s.profile)
    events = scenario()
    chunks = [
        events[: len(events) // 3],
        events[len(events) // 3 : 2 * len(events) // 3],
        events[2 * len(events) // 3 :],
    ]
    worker = stack.worker()
    try:
        for chunk in chunks:
            stack.publish(chunk)
            await asyncio.sleep(1.5)
            worker.kill()  # kill -9 wherever it is: mid-batch, mid-sweep or mid-relay
            worker = stack.worker()
        stack.publish(ticks(END))
        stack.wait_applied(worker)
        stack.wait_swept(worker)
        wait_for(lambda: sum(outbox_sizes(s)) == 0, 60, "the outbox to be relayed", worker)
    finally:
        worker.stop()

    everything = events + ticks(END)
    want = expected_fired(everything, profile)
    got = consume_all(s.kafka_bootstrap, s.triggers_topic)
    ids = [ce["id"] for _, ce, _ in got]
    assert len(ids) == len(set(ids)), "a downstream consumer saw a trigger twice"
    assert sorted(ids) == sorted(f.id for f in want)
    at = {(ce["subject"], ce["data"]["kind"], ce["data"].get("state"), ce["time"]) for _, ce, _ in got}

    d = DAY_MS
    # recall: exactly once per state entered, at the event time it was entered
    assert {x for x in at if x[0] == "r1"} == {
        ("r1", "recall", "silent", iso_ms(T0 + 3 * d)),
        ("r1", "recall", "churned", iso_ms(T0 + 14 * d)),
    }
    assert {x for x in at if x[0] == "r2"} == {
        ("r2", "recall", "silent", iso_ms(T0 + 3 * d)),
        ("r2", "recall", "silent", iso_ms(T0 + 7 * d)),
        ("r2", "recall", "churned", iso_ms(T0 + 18 * d)),
    }
    # quiet hours: due at 23:00 UTC, sent at 08:00 the next morning
    q1 = [ce for _, ce, _ in got if ce["subject"] == "q1"]
    assert [(ce["data"]["due"], ce["time"]) for ce in q1] == [
        (iso_ms(T0 + 3 * d + 11 * HOUR), iso_ms(T0 + 3 * d + 20 * HOUR)),
        (iso_ms(T0 + 14 * d + 11 * HOUR), iso_ms(T0 + 14 * d + 20 * HOUR)),
    ]
    # renewal: the 7-day reminder went out, the renewal cancelled the 1-day one and the expiry
    p2 = {(x[1], x[3]) for x in at if x[0] == "p2"}
    assert ("renewal", iso_ms(T0 + 3 * d)) in p2 and not any(k == "expiry" for k, _ in p2)
    assert not any(k == "renewal" and t != iso_ms(T0 + 3 * d) for k, t in p2)
    # onboarding: o1 had no first order within 2 days; o2 ordered and was suppressed
    assert ("o1", "onboarding", None, iso_ms(T0 + 2 * d)) in at
    assert not any(x[0] == "o2" and x[1] == "onboarding" for x in at)
    # frequency cap, 3 per 7 days: c1's reminders of two policies and its recalls; the 1-day
    # reminder of P3 (+7d) and one of the two triggers due at +8d are capped
    c1 = sorted(ce["time"] for _, ce, _ in got if ce["subject"] == "c1")
    assert c1 == [iso_ms(T0 + k * d) for k in (1, 2, 3, 8, 9, 14)]
    # holdout: exactly the hashed 10 %, flagged, not dropped
    held = {ce["subject"] for _, ce, _ in got if ce["data"]["holdout"]}
    onboarded = {ce["subject"] for _, ce, _ in got if ce["data"]["kind"] == "onboarding"}
    assert {u for u in onboarded if u.startswith("h")} == {f"h{i}" for i in range(300)}
    assert held & onboarded == {u for u in onboarded if in_holdout(u, 10)}
    assert 10 <= len({u for u in held if u.startswith("h")}) <= 50
    # every message: the user as key, the CloudEvent envelope, the outbox position header
    schema = validator("trigger.schema.json")
    for key, ce, headers in got:
        schema.validate(ce)  # schemas/trigger.schema.json, as published
        assert key == ce["subject"].encode()
        assert ce["specversion"] == "1.0" and ce["source"] == s.triggers_source
        assert ce["type"] == f"{s.triggers_type_prefix}.lifecycle.{ce['data']['kind']}.v1"
        assert OUTBOX_HEADER in headers

    async with httpx.AsyncClient(transport=httpx.ASGITransport(create_api(s)), base_url="http://api") as api:
        c1_body = (await api.get("/users/c1/triggers")).json()
        assert len(c1_body["fired"]) == len(c1)
        assert c1_body["scheduled"] == []
        p2_body = (await api.get("/users/p2/triggers")).json()
        assert [x["due"] for x in p2_body["scheduled"]] == [T0 + 368 * d, T0 + 374 * d, T0 + 375 * d]
        x1 = trigger_id("recall", "x1", f"silent|{T0}")
        x1_fired = (await api.get("/users/x1/triggers")).json()["fired"]
        outcomes = next(f["outcomes"] for f in x1_fired if f["id"] == x1)
        assert outcomes == ["message_delivered", "message_click", "paid", "returned"]
        assert (await api.get("/users/nobody/triggers")).status_code == 404

        summary = (await api.get("/triggers/summary")).json()
        by_type = {t["type"]: t for t in summary["triggers"]}
        fired_kinds = defaultdict(lambda: [0, 0])
        for f in want:
            fired_kinds[f.kind][f.holdout] += 1
        for kind, (sent, held_out) in fired_kinds.items():
            assert (by_type[kind]["sent"], by_type[kind]["held_out"]) == (sent, held_out), kind
        assert by_type["recall"]["deferred"] == 2
        assert by_type["renewal"]["cancelled"] == 1 and by_type["expiry"]["cancelled"] == 1
        assert by_type["onboarding"]["suppressed"] == 1
        assert by_type["renewal"]["capped"] + by_type["expiry"]["capped"] + by_type["recall"]["capped"] == 2
        # recalls by the state recalled from: their plan, and statuses adding up to the recalls'
        by_origin = {o["origin"]: o for o in by_type["recall"]["by_origin"]}
        assert {o: b["plan"] for o, b in by_origin.items()} == {
            "silent": "transaction",
            "churned": "transaction",
            "dead": "login",
        }
        recalls_by_state: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for f in want:
            if f.kind == "recall":
                recalls_by_state[f.data["state"]][f.holdout] += 1
        for state, block in by_origin.items():
            assert [block["sent"], block["held_out"]] == recalls_by_state.get(state, [0, 0]), state
        for status in ("sent", "held_out", "capped", "suppressed", "deferred"):
            assert sum(b[status] for b in by_origin.values()) == by_type["recall"][status], status
        group = "holdout_outcomes" if in_holdout("x1", 10) else "outcomes"
        assert by_type["recall"][group]["returned"] >= 1
        assert by_origin["silent"][group]["returned"] >= 1  # x1 came back after its silent recall
        if group == "outcomes":
            assert by_type["recall"]["outcomes"]["message_click"] == 1
            assert by_type["recall"]["click_through_rate"] == 1.0

        metrics = (await api.get("/metrics")).text
        assert "lifecycle_outbox_pending 0.0" in metrics


class KafkaSink:
    """The worker's sink, on a plain aiokafka producer (what the relay needs: send, ack, read tail)."""

    def __init__(self, producer: AIOKafkaProducer, bootstrap: str) -> None:
        self.producer = producer
        self.bootstrap = [bootstrap]

    async def send_and_wait(self, messages: Sequence[Outgoing]) -> list[tuple[Outgoing, BaseException]]:
        futures = [
            await self.producer.send(m.topic, m.value, key=m.key, partition=m.partition, headers=m.headers)
            for m in messages
        ]
        await asyncio.gather(*futures)
        return []

    async def last_header(self, topic: str, partition: int, header: str) -> list[bytes]:
        return await last_header_values(self.bootstrap, topic, partition, header)


async def test_relay_skips_what_a_crashed_predecessor_already_published(stack: Stack) -> None:
    """The crash window of the relay: published and acknowledged, but not yet trimmed."""
    s = stack.settings
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all")
    await producer.start()
    client = Redis.from_url(s.redis_url)
    try:
        sink = KafkaSink(producer, s.kafka_bootstrap)
        store = RedisStore(client, s.key_prefix, s.dedup_window_s)
        first = PartitionProcessor(store, sink, s, s.loaded_profile)
        partition = 1
        fired = [
            Fired(f"{i:032x}", "onboarding", f"u{i}", "-", T0, T0, "t", False, False, {"after": "register"})
            for i in range(5)
        ]
        await _commit_outbox(first, store, partition, fired[:3])
        # a relay that died after the broker's ack, before trimming the outbox
        entries = await store.outbox_read(partition, 100)
        await sink.send_and_wait(
            [
                Outgoing(
                    s.triggers_topic, ce, uid.encode(), partition, [(OUTBOX_HEADER, first.outbox_header(sid))]
                )
                for sid, uid, ce in entries
            ]
        )
        # another deployment misconfigured onto the same topic: its ids say nothing of ours
        await sink.send_and_wait(
            [
                Outgoing(
                    s.triggers_topic, b"{}", b"x", partition, [(OUTBOX_HEADER, b"other/lc/99999999999999-0")]
                )
            ]
        )
        second = PartitionProcessor(store, sink, s, s.loaded_profile)  # the next owner
        await _commit_outbox(second, store, partition, fired[3:])
        assert await second.relay(partition) == 2  # only what the topic does not hold yet
        assert await store.outbox_length(partition) == 0
        assert await second.relay(partition) == 0
        got = [ce.get("id") for _, ce, _ in consume_all(s.kafka_bootstrap, s.triggers_topic)]
        assert got == [f.id for f in fired[:3]] + [None] + [f.id for f in fired[3:]]
    finally:
        await producer.stop()
        await client.aclose()


async def _commit_outbox(
    proc: PartitionProcessor, store: RedisStore, partition: int, fired: list[Fired]
) -> None:
    from service.core.batch import SweepResult

    gen = await proc._owner_generation(proc.partitions[partition])
    meta, channels = await store.sweep_position(partition)
    assert meta.gen == gen
    await store.commit_sweep(partition, meta, SweepResult(), T0, channels, DAY_MS, proc._outbox(fired))


async def test_relay_resends_an_entry_whose_send_failed_while_a_later_one_landed(stack: Stack) -> None:
    """A producer drops a batch that timed out and goes on with the next: the topic can
    hold a later outbox entry without an earlier one. The next owner's first sync must
    not take the latest id on the topic for 'everything before it is there'."""
    s = stack.settings
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all")
    await producer.start()
    client = Redis.from_url(s.redis_url)
    try:
        sink = KafkaSink(producer, s.kafka_bootstrap)
        store = RedisStore(client, s.key_prefix, s.dedup_window_s)
        first = PartitionProcessor(store, sink, s, s.loaded_profile)
        partition = 2
        fired = [
            Fired(f"{i:032x}", "onboarding", f"u{i}", "-", T0, T0, "t", False, False, {"after": "register"})
            for i in range(3)
        ]
        await _commit_outbox(first, store, partition, fired)
        entries = await store.outbox_read(partition, 100)
        landed = [entries[0], entries[2]]  # the middle one's send timed out; then the relay died
        await sink.send_and_wait(
            [
                Outgoing(
                    s.triggers_topic, ce, uid.encode(), partition, [(OUTBOX_HEADER, first.outbox_header(sid))]
                )
                for sid, uid, ce in landed
            ]
        )
        second = PartitionProcessor(store, sink, s, s.loaded_profile)  # the next owner
        await _commit_outbox(second, store, partition, [])
        while await second.relay(partition):
            pass
        assert await store.outbox_length(partition) == 0
        on_topic = consume_all(s.kafka_bootstrap, s.triggers_topic)
        assert {ce.get("id") for _, ce, _ in on_topic} == {f.id for f in fired}  # the middle one too
        relayed = [(key, ce, headers) for key, ce, headers in on_topic if ce["id"] == fired[1].id]
        key, ce, headers = relayed[0]
        # what the relay writes, the CloudEvents SDK reads in the Kafka binding's structured mode
        assert headers["content-type"] == b"application/cloudevents+json; charset=UTF-8"
        sdk = from_kafka_event(KafkaMessage(headers, key, orjson.dumps(ce)))
        assert (sdk.get_id(), sdk.get_type(), sdk.get_subject()) == (ce["id"], ce["type"], ce["subject"])
    finally:
        await producer.stop()
        await client.aclose()
