"""ensure_topics creates the webhook dead-letter topic on the real broker."""

from __future__ import annotations

from typing import Any

from kafka import KafkaAdminClient

from service.kafka.topics import ensure_topics
from service.settings import Settings


def test_ensure_topics_creates_the_webhook_dlq(broker: Any) -> None:
    s = Settings(kafka_bootstrap=broker.bootstrap, webhook_dlq_topic="wh-dlq-test", partitions=2)
    ensure_topics(s)
    admin = KafkaAdminClient(bootstrap_servers=s.kafka_bootstrap)
    try:
        assert "wh-dlq-test" in admin.list_topics()
    finally:
        admin.close()
