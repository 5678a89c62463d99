"""Publishing canonical events to the events topic, as envelopes or one per message.

Envelopes group events by the partition Kafka's default partitioner gives their user, so
the worker that owns the partition owns every user in it; the message key is the first
event's user id, and the partition is set explicitly.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import orjson
from kafka import KafkaProducer
from kafka.errors import KafkaError

from service.core.partitioning import partition_for


class PublishError(RuntimeError):
    """The broker did not acknowledge what was sent."""


class EventPublisher:
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partitions: int,
        envelope_size: int = 200,
        single: bool = False,
        **producer_config: Any,
    ) -> None:
        self.topic = topic
        self.partitions = partitions
        self.envelope_size = max(1, envelope_size)
        self.single = single
        config: dict[str, Any] = {
            "bootstrap_servers": [s.strip() for s in bootstrap.split(",")],
            "acks": "all",
            "linger_ms": 5,
            "batch_size": 1 << 20,
            "max_request_size": 16 << 20,
            "retries": 5,
            **producer_config,
        }
        self._producer = KafkaProducer(**config)
        self._pending: dict[int, list[dict[str, Any]]] = defaultdict(list)
        self._futures: list[Any] = []
        self.events_sent = 0
        self.messages_sent = 0

    def publish(self, events: Iterable[dict[str, Any]]) -> int:
        """Queue `events` for sending; returns how many. `flush()` waits for the acks."""
        count = 0
        for event in events:
            count += 1
            user_id = str(event.get("user_id", ""))
            if self.single:
                self._send(orjson.dumps(event), user_id.encode(), None)
                self.events_sent += 1
                continue
            p = partition_for(user_id, self.partitions)
            bucket = self._pending[p]
            bucket.append(event)
            if len(bucket) >= self.envelope_size:
                self._send_envelope(p)
        return count

    def publish_raw(self, value: bytes, key: bytes | None = None, partition: int | None = None) -> None:
        """Send bytes as they are (tests of bad input)."""
        self._send(value, key, partition)

    def _send_envelope(self, partition: int) -> None:
        bucket = self._pending.pop(partition)
        self._send(orjson.dumps(bucket), str(bucket[0].get("user_id", "")).encode(), partition)
        self.events_sent += len(bucket)

    def _send(self, value: bytes, key: bytes | None, partition: int | None) -> None:
        self._futures.append(self._producer.send(self.topic, value=value, key=key, partition=partition))
        self.messages_sent += 1
        if len(self._futures) >= 10_000:
            self._collect()

    def _collect(self) -> None:
        futures, self._futures = self._futures, []
        for future in futures:
            try:
                future.get(timeout=60)
            except KafkaError as exc:
                raise PublishError(
                    f"the broker did not acknowledge a message to {self.topic}: {exc!r}"
                ) from exc

    def flush(self) -> None:
        """Send the partly filled envelopes and wait until every message is acknowledged."""
        for p in list(self._pending):
            if self._pending[p]:
                self._send_envelope(p)
        self._producer.flush()
        self._collect()

    def close(self) -> None:
        self._producer.close()
