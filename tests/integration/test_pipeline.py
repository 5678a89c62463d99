"""Events through Kafka and the Faust worker into Redis and out of the API, for real."""

from __future__ import annotations

import httpx
import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer

from service.core.durations import DAY_MS
from service.core.partitioning import partition_for
from tests import reference as ref
from tests.processes import applied_offsets, wait_for
from tests.stack import (
    PARTITIONS,
    T0,
    Stack,
    assert_matches_reference,
    assert_transitions_match,
    history,
    read_counters,
    transition_counts,
    visit,
    wait_async,
)

pytestmark = pytest.mark.integration


async def test_history_through_worker_matches_reference(stack: Stack, api: httpx.AsyncClient) -> None:
    events = history()
    half = len(events) // 2
    stack.publish(events[:half])  # envelopes
    stack.publish(events[half:], single=True)  # one event per message
    stack.publish(events[:500], single=True)  # duplicates: applied once
    worker = stack.worker()
    try:
        stack.wait_applied(worker)
        await assert_matches_reference(api, events, stack.settings.loaded_profile)
        await assert_transitions_match(stack, worker, events)
        assert (await api.get("/users/nobody-here")).status_code == 404
        ready = await api.get("/readyz")
        assert ready.status_code == 200, ready.text
    finally:
        worker.stop()


async def test_bad_input_goes_to_the_dead_letter_topic_while_good_input_flows(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    s = stack.settings
    good = [visit(f"g{i}", f"user-{i}", T0 + i, channel="ads") for i in range(40)]
    bad_values: list[bytes] = [
        b"not json",
        b"",
        orjson.dumps({"event_id": "x1", "user_id": "u"}),  # no type, no ts
        orjson.dumps(visit("x2", "u", T0, ts_extra=1)),  # unknown field
        orjson.dumps(visit("x3", "u" * 129, T0)),  # oversize user id
        orjson.dumps(visit("x4", "u", "yesterday")),  # type: ignore[arg-type]
        orjson.dumps([visit("x5", "user-1", T0), {"event_id": "x6"}]),  # envelope with one bad event
        orjson.dumps(42),
    ]
    producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all")
    for i, value in enumerate(bad_values):
        producer.send(
            s.events_topic, key=f"k{i}".encode(), value=value, partition=partition_for("user-1", PARTITIONS)
        )
    producer.flush()
    producer.close()
    stack.publish(good, single=True)
    worker = stack.worker()
    try:
        stack.wait_applied(worker)
        consumer = KafkaConsumer(
            s.dlq_topic,
            bootstrap_servers=s.kafka_bootstrap,
            auto_offset_reset="earliest",
            consumer_timeout_ms=5000,
        )
        dead = list(consumer)
        consumer.close()
        reasons = {dict(m.headers)["x-error-reason"].decode() for m in dead}
        assert len(dead) == len(bad_values)  # the envelope's good event applies; its bad one is dead-lettered
        assert any("not JSON" in r for r in reasons)
        assert any("unknown field" in r for r in reasons)
        assert any("user_id" in r for r in reasons)
        assert any("RFC 3339" in r for r in reasons)
        envelope_dead = [m for m in dead if b"x6" in m.value]
        assert dict(envelope_dead[0].headers)["x-envelope-index"] == b"1"
        assert orjson.loads(envelope_dead[0].value) == {"event_id": "x6"}
        body = (await api.get("/lifecycle")).json()
        assert body["total"] == 40
        user = (await api.get("/users/user-1")).json()
        assert user["event_counts"] == {"visit": 2}  # g1 and x5 from the mixed envelope
    finally:
        worker.stop()


async def test_time_moves_users_through_stages_in_event_clock(stack: Stack, api: httpx.AsyncClient) -> None:
    """Users go silent, churned and dead without any event of theirs: the clock moves them."""
    profile = stack.settings.loaded_profile
    th = profile.thresholds
    quiet = [f"quiet-{i}" for i in range(30)]
    events = [visit(f"q{i}", uid, T0) for i, uid in enumerate(quiet)]
    # a busy user in every partition moves each partition's event clock past the thresholds
    busy = {partition_for(f"busy-{i}", PARTITIONS): f"busy-{i}" for i in range(64)}
    assert len(busy) == PARTITIONS
    worker = stack.worker()
    try:
        stack.publish(events)
        stack.wait_applied(worker)
        for step, offset in enumerate((th.silent_after, th.churn_after, th.dead_after)):
            stack.publish([visit(f"b{step}-{p}", uid, T0 + offset) for p, uid in busy.items()])
            stack.wait_applied(worker)
            expected = ("silent", "churned", "dead")[step]

            async def moved(expected: str = expected) -> bool:
                body = (await api.get("/lifecycle")).json()
                return body["counts"][expected] == len(quiet)

            await wait_async(moved, 30, f"quiet users {expected}")
        # each crossing recorded exactly once, by the sweeps
        all_events = events + [
            visit(f"b{step}-{p}", uid, T0 + offset)
            for step, offset in enumerate((th.silent_after, th.churn_after, th.dead_after))
            for p, uid in busy.items()
        ]
        stack.wait_swept(worker)
        assert transition_counts(await read_counters(stack)) == ref.transitions(
            all_events, profile, T0 + th.dead_after
        )
        # a dead user who comes back is recalled from dead
        stack.publish([visit("back", quiet[0], T0 + th.dead_after + DAY_MS)])
        stack.wait_applied(worker)
        user = (await api.get(f"/users/{quiet[0]}")).json()
        assert user["state"] in ("retained", "new")
        counters = await read_counters(stack)
        assert counters["tr|dead|retained"] == 1
    finally:
        worker.stop()


async def test_worker_killed_mid_stream_neither_doubles_nor_drops(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    events = history(users=1500)
    stack.publish(events, single=True)
    s = stack.settings
    kills = 0
    worker = stack.worker()
    try:
        for _ in range(2):
            # let it apply part of the stream, then kill -9 in the middle of it
            start = sum(applied_offsets(s.redis_url, s.key_prefix, PARTITIONS).values())
            wait_for(
                lambda start=start: (
                    sum(applied_offsets(s.redis_url, s.key_prefix, PARTITIONS).values()) > start + 300
                ),
                120,
                "progress before the kill",
                worker,
            )
            worker.kill()
            kills += 1
            worker = stack.worker()
        stack.wait_applied(worker, timeout=240)
        await assert_matches_reference(api, events, s.loaded_profile)
        await assert_transitions_match(stack, worker, events)
        counters = await read_counters(stack)
        distinct = len({e["event_id"] for e in events})
        users = ref.reference(events, s.loaded_profile)
        applied = counters["applied"] + counters.get("unknown_user_events", 0)
        assert applied == distinct
        assert sum(v for k, v in counters.items() if k.startswith("tr|-|")) == len(users)
        assert kills == 2
    finally:
        worker.stop()
