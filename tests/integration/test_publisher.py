"""The publisher against a real broker: envelopes land on their users' partition, single events
where Kafka's partitioner puts them, and every failure to deliver is an error, not silence."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from service.core.partitioning import partition_for
from service.core.profile import load_profile
from service.dev.generator import generate
from service.dev.kafka_broker import TansuBroker
from service.dev.processes import free_port
from service.kafka.publisher import EventPublisher, PublishError
from service.kafka.topics import create_topics

pytestmark = pytest.mark.integration

PARTITIONS = 4
T0 = 1_700_000_000_000


def consume(bootstrap: str, topic: str, count: int, timeout: float = 60) -> list[Any]:
    """The first `count` messages of every partition of `topic`, read from the start."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        consumer.seek_to_beginning()
        messages: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(messages) < count and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                messages.extend(batch)
        return messages
    finally:
        consumer.close()


def per_user(events: list[dict[str, Any]]) -> dict[str, list[str]]:
    ids: dict[str, list[str]] = defaultdict(list)
    for ev in events:
        ids[ev["user_id"]].append(ev["event_id"])
    return ids


@pytest.fixture
def history() -> list[dict[str, Any]]:
    return list(generate(users=300, start_ms=T0, days=30, seed=11, profile=load_profile("insurance")))


def test_envelopes_carry_only_their_partitions_users_in_order(
    broker: Any, topic_names: Callable[[str], str], history: list[dict[str, Any]]
) -> None:
    topic = topic_names("envelopes")
    create_topics(broker.bootstrap, {topic: PARTITIONS})
    with EventPublisher(broker.bootstrap, topic, PARTITIONS, envelope_size=50) as pub:
        assert pub.publish(history) == len(history)
        pub.flush()
        assert pub.events_sent == len(history)
        assert pub.messages_acked == pub.messages_sent >= len(history) // 50
    messages = consume(broker.bootstrap, topic, pub.messages_sent)
    assert len(messages) == pub.messages_sent
    received: list[dict[str, Any]] = []
    for msg in sorted(messages, key=lambda m: (m.partition, m.offset)):
        envelope = orjson.loads(msg.value)
        assert isinstance(envelope, list) and 1 <= len(envelope) <= 50
        assert msg.key == envelope[0]["user_id"].encode()
        assert {partition_for(ev["user_id"], PARTITIONS) for ev in envelope} == {msg.partition}
        received.extend(envelope)
    assert len(received) == len(history)
    assert per_user(received) == per_user(history)  # each user's events in the order given


def test_single_events_are_keyed_by_user_and_partitioned_as_partition_for_says(
    broker: Any, topic_names: Callable[[str], str], history: list[dict[str, Any]]
) -> None:
    topic = topic_names("single")
    create_topics(broker.bootstrap, {topic: PARTITIONS})
    events = history[:500]
    with EventPublisher(broker.bootstrap, topic, PARTITIONS, single=True) as pub:
        pub.publish(events)
        pub.publish_raw(b"{not json", key=b"u-bad", partition=2)
        pub.flush()
        assert (pub.events_sent, pub.messages_sent, pub.messages_acked) == (500, 501, 501)
    messages = consume(broker.bootstrap, topic, 501)
    raw = [m for m in messages if m.value == b"{not json"]
    assert [(m.key, m.partition) for m in raw] == [(b"u-bad", 2)]
    received = []
    for msg in sorted((m for m in messages if m not in raw), key=lambda m: (m.partition, m.offset)):
        event = orjson.loads(msg.value)
        assert isinstance(event, dict) and msg.key == event["user_id"].encode()
        assert msg.partition == partition_for(event["user_id"], PARTITIONS)
        received.append(event)
    assert per_user(received) == per_user(events)


def test_a_topic_with_another_partition_count_is_refused_before_anything_is_sent(
    broker: Any, topic_names: Callable[[str], str], history: list[dict[str, Any]]
) -> None:
    topic = topic_names("wrong-layout")
    create_topics(broker.bootstrap, {topic: PARTITIONS})
    with EventPublisher(broker.bootstrap, topic, PARTITIONS * 2) as pub:
        with pytest.raises(PublishError, match="has 4 partitions but events are routed for 8"):
            pub.publish(history)
        assert pub.messages_sent == 0


def test_an_unreachable_broker_is_a_clear_error() -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(PublishError, match=f"cannot reach Kafka at {bootstrap}"):
        EventPublisher(bootstrap, "nowhere", PARTITIONS, bootstrap_timeout_ms=2000)
    assert time.monotonic() - started < 30


def test_a_broker_that_stops_acknowledging_fails_the_flush(
    tmp_path: Any, history: list[dict[str, Any]]
) -> None:
    with TansuBroker(tmp_path / "tansu") as own:
        topic = "events"
        create_topics(own.bootstrap, {topic: PARTITIONS})
        config: dict[str, Any] = {
            "request_timeout_ms": 2000,
            "delivery_timeout_ms": 4000,
            "max_block_ms": 4000,
        }
        pub = EventPublisher(own.bootstrap, topic, PARTITIONS, **config)
        try:
            pub.publish(history[:10])
            pub.flush()
            own.stop()
            started = time.monotonic()
            with pytest.raises(PublishError, match="not acknowledge"):
                pub.publish(history[10:])
                pub.flush()
            assert time.monotonic() - started < pub.flush_timeout_s + 5
            assert pub.messages_acked < pub.messages_sent
        finally:
            pub.close(timeout_s=1)
