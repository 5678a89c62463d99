"""Publishing canonical events to the events topic, as envelopes or one per message.

Envelopes group events by the partition Kafka's default partitioner gives their user
(`partition_for`), so the worker that owns the partition owns every user in it; the
message key is the first event's user id and the partition is set explicitly. Single
mode keys each event by its user id and lets the producer's own partitioner (the same
murmur2) choose. Sending is asynchronous; `flush()` is the point where every message
sent so far is acknowledged by the broker or a `PublishError` says why not.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Any

import orjson
from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError

from service.core.envelopes import ENVELOPE_MAX_BYTES, envelopes
from service.kafka.options import kafka_python_options
from service.kafka.topics import ensure_topics
from service.settings import Settings

_CACHE_LIMIT = 500_000  # user -> partition entries kept; murmur2 in Python is the costly part


class PublishError(RuntimeError):
    """Events did not reach the broker: unreachable, unacknowledged, or the wrong topic layout."""


class EventPublisher:
    """A Kafka producer for canonical events (`acks=all`, lingering, large batches, no compression)."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partitions: int,
        envelope_size: int = 200,
        single: bool = False,
        envelope_max_bytes: int = ENVELOPE_MAX_BYTES,
        **producer_config: Any,
    ) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be at least 1, not {partitions}")
        self.topic = topic
        self.partitions = partitions
        self.envelope_size = max(1, envelope_size)
        self.envelope_max_bytes = envelope_max_bytes
        self.single = single
        config: dict[str, Any] = {
            "bootstrap_servers": [s.strip() for s in bootstrap.split(",") if s.strip()],
            "acks": "all",
            "linger_ms": 10,
            "batch_size": 1 << 20,
            "max_request_size": 16 << 20,
            "compression_type": None,
            **producer_config,
        }
        # flush() waits at most this long: the producer gives up on a batch after delivery_timeout_ms.
        self.flush_timeout_s = int(config.get("delivery_timeout_ms", 120_000)) / 1000 + 10
        try:
            self._producer = KafkaProducer(**config)
        except KafkaError as exc:
            raise PublishError(f"cannot reach Kafka at {bootstrap}: {exc!r}") from exc
        self._errors: list[BaseException] = []
        self._lock = threading.Lock()  # acks arrive on the producer's IO thread (or here, if already done)
        self._cache: dict[str, int] = {}
        self._checked = False
        self.events_sent = 0
        self.messages_sent = 0
        self.messages_acked = 0
        self.acked_offsets: dict[int, int] = {}  # partition -> highest offset the broker acknowledged

    def publish(self, events: Iterable[dict[str, Any]]) -> int:
        """Send `events` (a partly filled envelope included); returns how many. `flush()` awaits the acks."""
        self._check_topic()
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

        if len(self._cache) > _CACHE_LIMIT:
            self._cache.clear()
        for partition, key, value in envelopes(
            items(), self.partitions, self.envelope_size, self._cache, self.envelope_max_bytes
        ):
            self._send(value, key, partition)
        self.events_sent += count
        return count

    def publish_raw(self, value: bytes, key: bytes | None = None, partition: int | None = None) -> None:
        """Send bytes as they are (tests of bad input); counted as a message, not as events."""
        self._send(value, key, partition)

    def flush(self) -> None:
        """Wait until every message sent so far is acknowledged; `PublishError` if one was not."""
        try:
            self._producer.flush(timeout=self.flush_timeout_s)
        except KafkaTimeoutError as exc:
            unacked = self.messages_sent - self.messages_acked
            raise PublishError(
                f"{unacked} message(s) to {self.topic} not acknowledged within {self.flush_timeout_s:.0f}s"
            ) from exc
        self._raise_failed()

    def close(self, timeout_s: float = 10) -> None:
        """Close the producer; messages not yet flushed get `timeout_s` to be delivered."""
        self._producer.close(timeout=timeout_s)

    def __enter__(self) -> EventPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, value: bytes, key: bytes | None, partition: int | None) -> None:
        self._raise_failed()
        try:
            future = self._producer.send(self.topic, value=value, key=key, partition=partition)
        except KafkaTimeoutError as exc:
            raise PublishError(f"no metadata for topic {self.topic} from the broker: {exc}") from exc
        except KafkaError as exc:
            raise PublishError(f"cannot send to {self.topic}: {exc!r}") from exc
        future.add_callback(self._acked)
        future.add_errback(self._errors.append)
        self.messages_sent += 1

    def _acked(self, metadata: Any) -> None:
        with self._lock:
            self.messages_acked += 1
            partition, offset = metadata.partition, metadata.offset
            if offset > self.acked_offsets.get(partition, -1):
                self.acked_offsets[partition] = offset

    def _raise_failed(self) -> None:
        if self._errors:
            first = self._errors[0]
            raise PublishError(
                f"the broker did not acknowledge {len(self._errors)} message(s) to {self.topic}: {first!r}"
            ) from first

    def _check_topic(self) -> None:
        """Fail fast when the topic's partition count is not the one users are routed by."""
        if self._checked:
            return
        try:
            found = self._producer.partitions_for(self.topic)
        except KafkaError as exc:
            raise PublishError(f"topic {self.topic} is not available: {exc!r}") from exc
        if found and len(found) != self.partitions:
            raise PublishError(
                f"topic {self.topic} has {len(found)} partitions but events are routed for "
                f"{self.partitions}; workers would receive users they do not own"
            )
        self._checked = True


def publish_events(
    settings: Settings, events: Iterable[dict[str, Any]], *, single: bool, envelope_size: int
) -> int:
    """Publish `events` to the events topic (created if missing), flushed: the count sent."""
    ensure_topics(settings)
    publisher = EventPublisher(
        settings.kafka_bootstrap,
        settings.events_topic,
        settings.partitions,
        envelope_size=envelope_size,
        single=single,
        envelope_max_bytes=settings.envelope_max_bytes,
        **kafka_python_options(settings),
    )
    try:
        sent = publisher.publish(events)
        publisher.flush()
    finally:
        publisher.close()
    return sent
