"""The ways events come in: single messages, envelopes, the HTTP collector and the bridge.

The same history through each must give the same state; bad input through each is
dead-lettered or refused with a reason; and a crash of the bridge loses and doubles
nothing.
"""

from __future__ import annotations

import gzip
from typing import Any

import httpx
import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer
from redis import Redis

from service.api.app import create_api
from service.core.partitioning import partition_for
from service.dev.kafka_broker import TansuBroker
from service.kafka.publisher import EventPublisher
from service.kafka.topics import create_topics
from service.settings import Settings
from service.storage.keys import all_partitions
from tests import reference as ref
from tests.processes import ServiceProcess, wait_for
from tests.stack import (
    PARTITIONS,
    T0,
    Stack,
    assert_matches_reference,
    assert_transitions_match,
    history,
    read_counters,
    visit,
)

pytestmark = pytest.mark.integration


def _applied_total(stack: Stack) -> int:
    """Events applied so far (creating a user or not), summed over partitions."""
    client = Redis.from_url(stack.settings.redis_url)
    try:
        total = 0
        for k in all_partitions(stack.settings.key_prefix, PARTITIONS):
            values = client.hmget(k.counters, ["applied", "unknown_user_events"])
            total += sum(int(v) for v in values if v is not None)
        return total
    finally:
        client.close()


def _bridge(stack: Stack, source: str) -> ServiceProcess:
    return ServiceProcess("bridge", stack.env, stack.workdir / "bridge.log", ["--from", source]).start()


def wait_events_applied(stack: Stack, expected: int, proc: ServiceProcess, timeout: float = 180) -> None:
    wait_for(lambda: _applied_total(stack) >= expected, timeout, f"{expected} events applied", proc)
    assert _applied_total(stack) == expected


def _publish_single(bootstrap: str, topic: str, events: list[dict[str, Any]]) -> None:
    pub = EventPublisher(bootstrap, topic, PARTITIONS, single=True)
    try:
        pub.publish(events)
        pub.flush()
    finally:
        pub.close()


async def _post_all(stack: Stack, events: list[dict[str, Any]], size: int = 100) -> None:
    app = create_api(stack.settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api") as api:
        for i in range(0, len(events), size):
            r = await api.post("/v1/events", content=orjson.dumps(events[i : i + size]))
            assert r.status_code == 200, r.text
            assert r.json() == {"accepted": len(events[i : i + size]), "rejected": []}
        await app.state.collector.close()


@pytest.mark.parametrize("way", ["single", "envelopes", "collector", "bridge"])
async def test_every_way_in_gives_the_same_state(way: str, stack: Stack) -> None:
    events = history(users=250)
    s = stack.settings
    distinct = len({e["event_id"] for e in events})
    worker = stack.worker()
    bridge = None
    try:
        if way == "single":
            stack.publish(events, single=True)
        elif way == "envelopes":
            stack.publish(events)
        elif way == "collector":
            await _post_all(stack, events)
        else:
            source = f"{s.events_topic}.source"
            create_topics(s.kafka_bootstrap, {source: PARTITIONS})
            _publish_single(s.kafka_bootstrap, source, events)
            bridge = _bridge(stack, source)
        wait_events_applied(stack, distinct, worker)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(create_api(s)), base_url="http://api"
        ) as api:
            await assert_matches_reference(api, events, s.loaded_profile)
        await assert_transitions_match(stack, worker, events)
        counters = await read_counters(stack)
        assert counters.get("duplicates", 0) == 0 and counters.get("misrouted", 0) == 0
        assert counters.get("rejected", 0) == 0
    finally:
        if bridge:
            bridge.stop()
        worker.stop()


async def test_misrouted_envelope_is_rerouted_to_the_owner(stack: Stack) -> None:
    s = stack.settings
    users = [f"user-{i}" for i in range(40)]
    wrong = [visit(f"m{i}", uid, T0 + i, channel="ads") for i, uid in enumerate(users)]
    producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all")
    producer.send(s.events_topic, key=b"x", value=orjson.dumps(wrong), partition=0).get(30)
    producer.close()
    misplaced = sum(1 for uid in users if partition_for(uid, PARTITIONS) != 0)
    assert misplaced > 0
    worker = stack.worker()
    try:
        wait_events_applied(stack, len(users), worker)
        counters = await read_counters(stack)
        assert counters["misrouted"] == misplaced
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(create_api(s)), base_url="http://api"
        ) as api:
            assert (await api.get("/lifecycle")).json()["total"] == len(users)
            for uid in users:
                assert (await api.get(f"/users/{uid}")).json()["channel"] == "ads"
    finally:
        worker.stop()


async def test_collector_refuses_bad_requests_and_keeps_good_events(stack: Stack) -> None:
    s = stack.settings
    settings = Settings(**{**s.model_dump(exclude={"loaded_profile"}), "collector_max_events": 50})
    app = create_api(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api") as api:
        r = await api.post("/v1/events", content=b"{not json")
        assert r.status_code == 400 and "not JSON" in r.json()["detail"]
        r = await api.post("/v1/events", content=orjson.dumps([visit(f"e{i}", "u", T0) for i in range(51)]))
        assert r.status_code == 413
        r = await api.post("/v1/events", content=b"[" + b" " * (6 << 20) + b"]")
        assert r.status_code == 413
        r = await api.post("/v1/events", content=b"[]", headers={"content-encoding": "br"})
        assert r.status_code == 415
        mixed = [visit("ok1", "alice", T0), {"event_id": "bad"}, visit("ok2", "bob", T0, ts_x=1), 7]
        mixed.append(visit("ok3", "carol", T0, channel="search"))
        r = await api.post(
            "/v1/events", content=gzip.compress(orjson.dumps(mixed)), headers={"content-encoding": "gzip"}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["accepted"] == 2
        assert [x["index"] for x in body["rejected"]] == [1, 2, 3]
        assert "unknown field" in body["rejected"][1]["reason"]
        r = await api.post("/v1/events", content=orjson.dumps([{"event_id": "only-bad"}]))
        assert r.status_code == 400 and r.json()["accepted"] == 0
        r = await api.post("/v1/events", content=orjson.dumps(visit("one", "dave", T0)))
        assert r.json() == {"accepted": 1, "rejected": []}
        await app.state.collector.close()
    consumer = KafkaConsumer(
        s.events_topic,
        bootstrap_servers=s.kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    ids = sorted(e["event_id"] for m in consumer for e in orjson.loads(m.value))
    consumer.close()
    assert ids == ["ok1", "ok3", "one"]


async def test_collector_answers_503_while_the_broker_is_down(redis_url: str, tmp_path: Any) -> None:
    with TansuBroker(tmp_path / "tansu") as own:
        settings = Settings(
            kafka_bootstrap=own.bootstrap, redis_url=redis_url, partitions=PARTITIONS, collector_timeout=3
        )
        create_topics(own.bootstrap, {settings.events_topic: PARTITIONS})
        app = create_api(settings)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api") as api:
            r = await api.post("/v1/events", content=orjson.dumps([visit("before", "u1", T0)]))
            assert r.status_code == 200
            consumer = KafkaConsumer(
                settings.events_topic,
                bootstrap_servers=own.bootstrap,
                auto_offset_reset="earliest",
                consumer_timeout_ms=3000,
            )
            assert [e["event_id"] for m in consumer for e in orjson.loads(m.value)] == ["before"]
            consumer.close()
            own.stop()
            r = await api.post("/v1/events", content=orjson.dumps([visit("during", "u2", T0)]))
            assert r.status_code == 503, r.text
            assert r.headers["retry-after"] == "5"
            await app.state.collector.close()


async def test_bridge_killed_mid_stream_loses_and_doubles_nothing(stack: Stack) -> None:
    s = stack.settings
    events = history(users=1200)
    distinct = len({e["event_id"] for e in events})
    source = f"{s.events_topic}.source"
    create_topics(s.kafka_bootstrap, {source: PARTITIONS})
    _publish_single(s.kafka_bootstrap, source, events)
    worker = stack.worker()
    bridge = _bridge(stack, source)
    try:
        wait_for(lambda: _applied_total(stack) > 200, 120, "the bridge to start forwarding", bridge)
        bridge.kill()
        bridge = _bridge(stack, source)
        wait_events_applied(stack, distinct, worker, timeout=240)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(create_api(s)), base_url="http://api"
        ) as api:
            await assert_matches_reference(api, events, s.loaded_profile)
        assert len(ref.reference(events, s.loaded_profile)) > 0
    finally:
        bridge.stop()
        worker.stop()
