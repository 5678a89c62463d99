"""The embedded processes behave like the real thing for what the service relies on.

Keyed messages land in the partition the producer's partitioner picks (the worker's
per-partition state depends on it), a consumer group gets them all back and commits,
Redis answers, and Apache Kafka keeps topics and committed offsets across a graceful
restart and a SIGKILL.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition as AioTopicPartition
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.partitioner.default import murmur2

from service.dev.kafka_broker import KafkaBroker
from service.dev.redis_server import RedisServer
from service.kafka.topics import create_topics

if TYPE_CHECKING:
    from conftest import Broker

pytestmark = pytest.mark.integration

Record = tuple[int, int, bytes, bytes]  # partition, offset, key, value


def default_partition(key: bytes, partitions: int) -> int:
    """What kafka-python's DefaultPartitioner (Java's murmur2 scheme) picks for a key."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def produce(bootstrap: str, topic: str, count: int) -> dict[bytes, bytes]:
    """Send `count` keyed messages, checking each one's acknowledged partition."""
    partitions = len(_partitions(bootstrap, topic))
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        sent = {f"user-{i}".encode(): f"event-{i}".encode() for i in range(count)}
        futures = {key: producer.send(topic, key=key, value=value) for key, value in sent.items()}
        producer.flush(30)
        for key, future in futures.items():
            assert future.get(10).partition == default_partition(key, partitions), key
        return sent
    finally:
        producer.close()


def _partitions(bootstrap: str, topic: str) -> set[int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        return consumer.partitions_for_topic(topic) or set()
    finally:
        consumer.close()


def read_all(bootstrap: str, topic: str, count: int, group: str, timeout: float = 60) -> list[Record]:
    """Read the topic from the start with kafka-python and commit its end for `group`."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records: list[Record] = []
        deadline = time.monotonic() + timeout
        while len(records) < count and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend((r.partition, r.offset, r.key, r.value) for r in batch)
        consumer.commit()
        return sorted(records)
    finally:
        consumer.close()


def committed(bootstrap: str, topic: str, group: str) -> dict[int, int | None]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        parts = sorted(consumer.partitions_for_topic(topic) or ())
        return {p: consumer.committed(TopicPartition(topic, p)) for p in parts}
    finally:
        consumer.close()


async def test_keyed_messages_round_trip_through_a_consumer_group(
    broker: Broker, redis_server: RedisServer, redis_url: str, topic_names: Callable[[str], str]
) -> None:
    topic, group, partitions, count = topic_names("roundtrip"), topic_names("group"), 4, 1000
    create_topics(broker.bootstrap, {topic: partitions})
    sent = produce(broker.bootstrap, topic, count)

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        received: list[Record] = []
        deadline = time.monotonic() + 60
        while len(received) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=300)
            for batch in batches.values():
                received.extend((r.partition, r.offset, r.key, r.value) for r in batch)
        assignment = {tp.partition for tp in consumer.assignment()}
        await consumer.commit()
        commits = {p: await consumer.committed(AioTopicPartition(topic, p)) for p in range(partitions)}
    finally:
        await consumer.stop()

    assert assignment == set(range(partitions))
    assert len(received) == count, f"got {len(received)} of {count} messages"
    assert {key: value for _, _, key, value in received} == sent
    for partition, _, key, _ in received:
        assert partition == default_partition(key, partitions), key
    per_partition = {p: sorted(o for q, o, _, _ in received if q == p) for p in range(partitions)}
    for p, offsets in per_partition.items():
        assert offsets == list(range(len(offsets))), f"partition {p} offsets not contiguous from 0"
        assert commits[p] == len(offsets), f"partition {p} committed {commits[p]}, read {len(offsets)}"

    client = redis.Redis.from_url(redis_url)
    try:
        assert client.ping()
        assert client.dbsize() == 0
        client.set("embedded-stack", "ok")
        assert client.get("embedded-stack") == b"ok"
        assert client.info("server")["process_id"] == redis_server.pid
    finally:
        client.close()


def test_kafka_restart_and_crash_keep_topic_data_and_offsets(
    broker: Broker, workdir: Path, topic_names: Callable[[str], str]
) -> None:
    if broker.kind != "kafka":
        pytest.skip("Tansu is memory-only by design")
    topic, group, count = topic_names("durable"), topic_names("group"), 200
    # An instance of its own: the session's broker stays untouched for other tests.
    with KafkaBroker(workdir / "kafka") as kafka:
        create_topics(kafka.bootstrap, {topic: 2})
        produce(kafka.bootstrap, topic, count)
        before = read_all(kafka.bootstrap, topic, count, group)
        assert len(before) == count
        ends = {p: sum(1 for q, *_ in before if q == p) for p in range(2)}
        assert committed(kafka.bootstrap, topic, group) == ends
        cluster_id = kafka.cluster_id

        kafka.restart()
        assert read_all(kafka.bootstrap, topic, count, topic_names("after-restart")) == before
        assert committed(kafka.bootstrap, topic, group) == ends

        kafka.kill()
        kafka.start()
        assert read_all(kafka.bootstrap, topic, count, topic_names("after-kill")) == before
        assert committed(kafka.bootstrap, topic, group) == ends
        assert kafka.cluster_id == cluster_id
