"""A message the worker cannot forward never stalls its partition.

Dead letters and re-routed events are sent before the batch commits. A rejected message
bigger than the dead-letter topic takes goes there as a reference (its first 64 KiB); a
misrouted group is re-sent in envelopes that fit; a send that no retry can cure (the
topic refuses the size, authorization) is counted and logged, and the stream goes on.
Topic limits are set with Apache Kafka's `max.message.bytes`, hence those tests run on it.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from service.api.app import create_api
from service.core.partitioning import partition_for
from tests.integration.test_ingestion import _applied_total
from tests.processes import wait_for
from tests.stack import PARTITIONS, T0, Stack, read_counters, visit

pytestmark = pytest.mark.integration


@pytest.fixture
def kafka_only(broker_kind: str) -> None:
    if broker_kind != "kafka":
        pytest.skip(
            "topic max.message.bytes is set through Apache Kafka's AlterConfigs (LIFECYCLE_TEST_BROKER=kafka)"
        )


def _limit_topic(stack: Stack, topic: str, max_bytes: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=stack.settings.kafka_bootstrap)
    try:
        admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": str(max_bytes)})]
        )
    finally:
        admin.close()


def _send_raw(stack: Stack, value: bytes, partition: int) -> None:
    producer = KafkaProducer(
        bootstrap_servers=stack.settings.kafka_bootstrap, acks="all", max_request_size=16 << 20
    )
    producer.send(stack.settings.events_topic, key=b"k", value=value, partition=partition).get(30)
    producer.close()


def _dead(stack: Stack) -> list[Any]:
    consumer = KafkaConsumer(
        stack.settings.dlq_topic,
        bootstrap_servers=stack.settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    try:
        return list(consumer)
    finally:
        consumer.close()


async def _total(stack: Stack) -> int:
    app = create_api(stack.settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api") as api:
        total: int = (await api.get("/lifecycle")).json()["total"]
        return total


def _bad(size: int) -> bytes:
    """A rejected event (an unknown field) of about `size` bytes."""
    return orjson.dumps(visit("big-bad", "user-1", T0, junk="j" * size))


async def test_a_rejected_message_too_big_for_the_dead_letter_topic_goes_as_a_reference(
    stack: Stack, kafka_only: None
) -> None:
    _limit_topic(stack, stack.settings.dlq_topic, 200_000)
    p = partition_for("user-1", PARTITIONS)
    bad = _bad(500_000)
    _send_raw(stack, bad, p)
    good = [visit(f"g{i}", f"user-{i}", T0 + i) for i in range(20)]
    stack.publish(good, single=True)
    worker = stack.worker()
    try:
        wait_for(lambda: _applied_total(stack) >= len(good), 60, "the good events applied", worker)
    finally:
        worker.stop()
    assert await _total(stack) == len(good)
    dead = _dead(stack)
    assert len(dead) == 1
    headers = dict(dead[0].headers)
    assert headers["x-error-reason"] == b"too_large"
    assert int(headers["x-original-size"]) == len(bad)
    assert headers["x-source-partition"] == str(p).encode()
    assert b"unknown field" in headers["x-original-reason"]
    assert dead[0].value == bad[: 64 * 1024]


async def test_a_dead_letter_no_retry_can_deliver_is_counted_and_the_stream_goes_on(
    stack: Stack, kafka_only: None
) -> None:
    _limit_topic(stack, stack.settings.dlq_topic, 10_000)  # not even the 64 KiB reference fits
    p = partition_for("user-1", PARTITIONS)
    _send_raw(stack, _bad(500_000), p)
    good = [visit(f"g{i}", f"user-{i}", T0 + i) for i in range(20)]
    stack.publish(good, single=True)
    worker = stack.worker()
    try:
        wait_for(lambda: _applied_total(stack) >= len(good), 60, "the good events applied", worker)
        assert "undeliverable" in worker.log_tail(200) and f"partition {p}" in worker.log_tail(200)
    finally:
        worker.stop()
    counters = await read_counters(stack)
    assert counters["rejected"] == 1 and counters["undeliverable"] == 1
    assert _dead(stack) == []


async def test_a_misrouted_envelope_too_big_to_resend_whole_is_split(stack: Stack) -> None:
    users = [f"user-{i}" for i in range(400)]
    wrong = [visit(f"m{i}", uid, T0 + i, properties={"note": "n" * 2_420}) for i, uid in enumerate(users)]
    value = orjson.dumps(wrong)
    assert 1_000_000 < len(value) < 1_040_000  # under the topic's 1 MiB, over a producer's 1 MB
    _send_raw(stack, value, 0)
    worker = stack.worker()
    try:
        wait_for(lambda: _applied_total(stack) >= len(users), 90, "every user applied", worker)
    finally:
        worker.stop()
    counters = await read_counters(stack)
    assert counters["misrouted"] == sum(1 for uid in users if partition_for(uid, PARTITIONS) != 0)
    assert await _total(stack) == len(users)
