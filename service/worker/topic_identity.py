"""Which log a topic is: its Kafka topic id, which changes when the topic is recreated.

Offsets number one log. A topic deleted and created again, or a memory-only broker
(Tansu) restarted, starts a new log at offset 0 under the same name, and offsets the
store recorded as applied would then skip new events as if they were replays. The
worker records the topic id with the applied offsets and compares it when it claims a
partition (see `service.worker.claims`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

NO_ID = "00000000-0000-0000-0000-000000000000"  # what brokers without topic ids answer


class BrokerUnavailable(RuntimeError):
    """The broker did not answer the metadata request; retry later."""


class TopicIdentity:
    """The topic's id, looked up in a thread (kafka-python's admin client is blocking).

    One lookup serves every claim within `max_age_s` of its answer, so a rebalance that
    hands over all partitions at once costs one lookup, not one per partition. Releasing
    a partition (revoked, fenced, offsets gone back) calls `forget`, so the claim after it
    never trusts an answer from before it.
    """

    def __init__(
        self,
        bootstrap: list[str],
        topic: str,
        options: dict[str, Any] | None = None,
        max_age_s: float = 10.0,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.options = options or {}  # `kafka_python_options`: the deployment's SASL/SSL
        self.max_age_s = max_age_s
        self._cached: tuple[float, str | None] | None = None
        self._lock = asyncio.Lock()

    async def __call__(self) -> str | None:
        """The topic id, or None when the broker does not tell (Kafka before 2.8)."""
        async with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] > self.max_age_s:
                found = await asyncio.to_thread(self._lookup)  # about a second: a client bootstraps
                self._cached = (time.monotonic(), found)
            return self._cached[1]

    def forget(self) -> None:
        self._cached = None

    def _lookup(self) -> str | None:
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap,
                client_id="lifecycle-topic-id",
                **self.options,
                bootstrap_timeout_ms=10_000,
                request_timeout_ms=10_000,
            )
        except KafkaError as exc:
            raise BrokerUnavailable(f"no metadata from {self.bootstrap}: {exc!r}") from exc
        try:
            (found,) = admin.describe_topics([self.topic])
        except KafkaError as exc:
            raise BrokerUnavailable(f"no metadata for topic {self.topic}: {exc!r}") from exc
        finally:
            admin.close()
        if found.get("error_code"):
            raise BrokerUnavailable(f"topic {self.topic}: metadata error {found['error_code']}")
        topic_id = found.get("topic_id")
        return None if not topic_id or str(topic_id) == NO_ID else str(topic_id)
