"""Envelopes fit the broker: the collector and the bridge split them by bytes, not only by
count, so a request or a source batch near the broker's 1 MiB message limit (Apache
Kafka's default `max.message.bytes`) is delivered whole instead of refused for ever."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from kafka import KafkaConsumer

from service.api.app import create_api
from service.kafka.publisher import EventPublisher
from service.kafka.topics import create_topics
from tests.integration.test_ingestion import _applied_total, _bridge
from tests.processes import wait_for
from tests.stack import PARTITIONS, T0, Stack, make_stack, visit

pytestmark = pytest.mark.integration

PADDING = "x" * 1_100  # about 1.2 KB per event


def _heavy_events(n: int, prefix: str, padding: str = PADDING) -> list[dict[str, object]]:
    """`n` events of one user (so of one partition): together over 1 MiB."""
    return [visit(f"{prefix}{i}", "heavy-user", T0 + i, properties={"note": padding}) for i in range(n)]


def _wait_applied(stack: Stack, n: int, worker: object) -> None:
    wait_for(lambda: _applied_total(stack) >= n, 120, f"{n} events applied", worker)  # type: ignore[arg-type]
    assert _applied_total(stack) == n


async def test_the_collector_takes_a_request_over_the_message_limit_in_several_envelopes(
    stack: Stack,
) -> None:
    events = _heavy_events(950, "c")
    body = orjson.dumps(events)
    assert len(body) > 1 << 20
    app = create_api(stack.settings)
    worker = stack.worker()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api") as api:
            r = await api.post("/v1/events", content=body)
            await app.state.collector.close()
        assert r.status_code == 200, r.text
        assert r.json() == {"accepted": len(events), "rejected": []}
        _wait_applied(stack, len(events), worker)
    finally:
        worker.stop()


async def test_the_collector_refuses_only_an_event_over_the_envelope_limit(stack: Stack) -> None:
    app = create_api(stack.settings)
    huge = visit("huge", "u", T0, properties={"note": "y" * (stack.settings.envelope_max_bytes + 1)})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api") as api:
        r = await api.post("/v1/events", content=orjson.dumps([visit("ok", "u", T0), huge]))
        await app.state.collector.close()
    assert r.status_code == 413, r.text
    assert "LIFECYCLE_ENVELOPE_MAX_BYTES" in r.text


def _bridge_applies(stack: Stack, messages: list[dict[str, object]], applied: int) -> None:
    """`messages` one per message on a source topic, bridged: wait until `applied` events
    are applied, with the bridge still running."""
    s = stack.settings
    source = f"{s.events_topic}.source"
    create_topics(s.kafka_bootstrap, {source: PARTITIONS})
    pub = EventPublisher(s.kafka_bootstrap, source, PARTITIONS, single=True)
    try:
        pub.publish(messages)
        pub.flush()
    finally:
        pub.close()
    worker = stack.worker()
    bridge = _bridge(stack, source)
    try:
        _wait_applied(stack, applied, worker)
        assert bridge.alive(), bridge.log_tail()
    finally:
        bridge.stop()
        worker.stop()


def test_the_bridge_forwards_a_batch_over_the_message_limit(stack: Stack) -> None:
    events = _heavy_events(950, "b", "x" * 2_500)  # the bridge's 500-event envelopes: 1.3 MB
    _bridge_applies(stack, events, len(events))


def test_replay_publishes_envelopes_that_fit(stack: Stack) -> None:
    s = stack.settings
    events = _heavy_events(950, "r")
    pub = EventPublisher(s.kafka_bootstrap, s.events_topic, PARTITIONS, envelope_size=1000)
    try:
        pub.publish(events)
        pub.flush()
    finally:
        pub.close()
    worker = stack.worker()
    try:
        _wait_applied(stack, len(events), worker)
    finally:
        worker.stop()


def test_the_bridge_dead_letters_a_message_too_large_to_forward_as_a_reference(
    broker: Any, redis_url: str, tmp_path: Path
) -> None:
    stack = make_stack(broker, redis_url, tmp_path, LIFECYCLE_ENVELOPE_MAX_BYTES="20000")
    s = stack.settings
    small = [visit(f"s{i}", f"user-{i}", T0 + i) for i in range(30)]
    huge = visit("huge", "user-0", T0, properties={"note": "z" * 100_000})
    _bridge_applies(stack, [*small[:10], huge, *small[10:]], len(small))
    consumer = KafkaConsumer(
        s.dlq_topic,
        bootstrap_servers=s.kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    dead = list(consumer)
    consumer.close()
    assert len(dead) == 1
    headers = dict(dead[0].headers)
    assert headers["x-error-reason"] == b"too_large"
    assert int(headers["x-original-size"]) == len(orjson.dumps(huge))
    assert headers["x-source-topic"] == f"{s.events_topic}.source".encode()
    assert dead[0].value == orjson.dumps(huge)[: 64 * 1024]
