"""Producers on librdkafka (confluent-kafka, the Go and Node clients) must set
`partitioner=murmur2_random`: librdkafka's default hashes keys with CRC32, while the worker
expects Kafka's Java default (murmur2), so without it events land on partitions whose
worker does not own their user and have to be re-routed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from service.core.partitioning import partition_for
from tests.stack import T0, make_stack, read_counters, visit, wait_async

pytestmark = pytest.mark.integration


def _produce(bootstrap: str, topic: str, events: list[dict[str, Any]], **config: str) -> list[int]:
    """Send each event as a one-event envelope keyed by its user; the partitions it landed on."""
    landed: list[int] = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", **config})
    for e in events:
        producer.produce(
            topic,
            key=e["user_id"].encode(),
            value=orjson.dumps([e]),
            on_delivery=lambda err, msg: landed.append(-1 if err else msg.partition()),
        )
    assert producer.flush(30) == 0
    return landed


async def test_murmur2_random_lands_where_the_worker_expects(
    broker: Any, redis_url: str, tmp_path: Path
) -> None:
    stack = make_stack(broker, redis_url, tmp_path)
    s = stack.settings
    users = [f"user-{i}" for i in range(200)]
    events = [visit(f"e{i}", uid, T0 + i) for i, uid in enumerate(users)]
    landed = _produce(s.kafka_bootstrap, s.events_topic, events, partitioner="murmur2_random")
    assert sorted(landed) == sorted(partition_for(u, s.partitions) for u in users)
    worker = stack.worker()
    try:

        async def applied() -> bool:
            return (await read_counters(stack)).get("applied", 0) >= len(users)

        await wait_async(applied, 120, "every event applied")
        counters = await read_counters(stack)
        assert counters.get("misrouted", 0) == 0
        assert counters.get("applied", 0) == len(users)
    finally:
        worker.stop()


def test_librdkafka_default_partitioner_misroutes(broker: Any, redis_url: str, tmp_path: Path) -> None:
    stack = make_stack(broker, redis_url, tmp_path)
    s = stack.settings
    users = [f"user-{i}" for i in range(200)]
    events = [visit(f"e{i}", uid, T0 + i) for i, uid in enumerate(users)]
    producer = Producer({"bootstrap.servers": s.kafka_bootstrap, "acks": "all"})
    wrong = 0
    for e in events:

        def check(err: Any, msg: Any, uid: str = e["user_id"]) -> None:
            nonlocal wrong
            assert err is None
            wrong += msg.partition() != partition_for(uid, s.partitions)

        producer.produce(
            s.events_topic, key=e["user_id"].encode(), value=orjson.dumps([e]), on_delivery=check
        )
    assert producer.flush(30) == 0
    assert wrong > 0
