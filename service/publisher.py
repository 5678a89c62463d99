"""Publishing canonical events to the events topic, as envelopes or one per message.

Envelopes group events by the partition Kafka's default partitioner gives their user, so
the worker that owns the partition owns every user in it; the message key is the first
event's user id, and the partition is set explicitly.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import orjson
from kafka import KafkaProducer
from kafka.errors import KafkaError

from service.core.envelopes import envelopes


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
        self._futures: list[Any] = []
        self.events_sent = 0
        self.messages_sent = 0

    def publish(self, events: Iterable[dict[str, Any]]) -> int:
        """Send `events` (partly filled envelopes included); returns how many. `flush()` awaits the acks."""
        count = 0
        if self.single:
            for event in events:
                self._send(orjson.dumps(event), str(event.get("user_id", "")).encode(), None)
                count += 1
            self.events_sent += count
            return count

        def items() -> Iterator[tuple[str, bytes]]:
            nonlocal count
            for event in events:
                count += 1
                yield str(event.get("user_id", "")), orjson.dumps(event)

        for partition, key, value in envelopes(items(), self.partitions, self.envelope_size):
            self._send(value, key, partition)
        self.events_sent += count
        return count

    def publish_raw(self, value: bytes, key: bytes | None = None, partition: int | None = None) -> None:
        """Send bytes as they are (tests of bad input)."""
        self._send(value, key, partition)

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
        """Wait until every message sent is acknowledged."""
        self._producer.flush()
        self._collect()

    def close(self) -> None:
        self._producer.close()
