"""`lifecycle webhooks` creates its dead-letter topic on the real broker; one that exists
already is taken whatever its partition count (dead letters are keyed by user, nothing is
partitioned by number), while the events topics keep their exact count."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kafka import KafkaAdminClient

from service.kafka.topics import TopicError, create_topics, ensure_topics, ensure_webhook_topics
from service.settings import Settings

pytestmark = pytest.mark.integration


def _partitions(bootstrap: str, topic: str) -> int:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        (described,) = admin.describe_topics([topic])
        return len(described["partitions"])
    finally:
        admin.close()


def test_the_webhook_dead_letter_topic_is_created_or_taken_as_it_is(broker: Any) -> None:
    suffix = uuid.uuid4().hex[:8]
    s = Settings(
        kafka_bootstrap=broker.bootstrap,
        events_topic=f"ev-{suffix}",
        dlq_topic=f"ev-{suffix}.dlq",
        triggers_topic=f"tr-{suffix}",
        webhook_dlq_topic=f"wh-{suffix}.dlq",
        partitions=2,
    )
    ensure_topics(s)
    ensure_webhook_topics(s)
    assert _partitions(s.kafka_bootstrap, s.webhook_dlq_topic) == 2
    wider = s.model_copy(update={"partitions": 3})
    ensure_webhook_topics(wider)  # existing, 2 partitions: taken as it is
    with pytest.raises(TopicError, match="partitions"):
        ensure_topics(wider)  # the events topics must match LIFECYCLE_PARTITIONS
    create_topics(s.kafka_bootstrap, {f"new-{suffix}": 3}, any_count={f"new-{suffix}"})
    assert _partitions(s.kafka_bootstrap, f"new-{suffix}") == 3  # created with the count given
