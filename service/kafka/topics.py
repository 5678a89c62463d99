"""Idempotent topic creation, shared by the worker, `lifecycle dev` and the tests.

Partition counts are part of the contract (keys are partitioned by the producer and
per-partition state lives in Redis), so an existing topic with a different count is an
error, not something to paper over. Creation only returns once metadata shows every
partition with a leader: a CreateTopics answer alone does not mean producers and
consumers can use the topic yet, notably on KRaft.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

from kafka import KafkaAdminClient
from kafka.errors import KafkaError, TopicAlreadyExistsError

from service.kafka.options import kafka_python_options
from service.settings import Settings


class TopicError(RuntimeError):
    """A topic could not be created or does not have the expected partitions."""


def create_topics(
    bootstrap: str,
    topics: dict[str, int],
    timeout: float = 30,
    *,
    any_count: Collection[str] = (),
    **client_config: Any,
) -> None:
    """Create the missing `topics` ({name: partitions}) and wait until all are usable.

    An existing topic must have the given partition count, unless it is in `any_count`.
    `client_config`: kafka-python connection options (TLS, SASL; `kafka_clients.kafka_python_options`).
    """
    if not topics:
        return
    deadline = time.monotonic() + timeout
    admin = _admin(bootstrap, deadline, client_config)
    try:
        existing = set(admin.list_topics())
        missing = {name: n for name, n in topics.items() if name not in existing}
        if missing:
            _create(admin, missing, timeout)
        _wait_ready(admin, topics, existing, deadline, frozenset(any_count))
    finally:
        admin.close()


def _admin(bootstrap: str, deadline: float, client_config: dict[str, Any]) -> KafkaAdminClient:
    # kafka-python retries the bootstrap itself until the timeout; one attempt only,
    # because every failed KafkaAdminClient() leaves its IO thread behind.
    timeout_ms = max(int((deadline - time.monotonic()) * 1000), 1000)
    try:
        return KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="lifecycle-topics",
            bootstrap_timeout_ms=timeout_ms,
            **client_config,
        )
    except KafkaError as exc:
        raise TopicError(f"cannot reach Kafka at {bootstrap}: {exc!r}") from exc


def _create(admin: KafkaAdminClient, missing: dict[str, int], timeout: float) -> None:
    spec = {name: {"num_partitions": n, "replication_factor": 1} for name, n in missing.items()}
    response = admin.create_topics(spec, timeout_ms=int(timeout * 1000), raise_errors=False)
    for topic in response.get("topics", []):
        code = topic.get("error_code", 0)
        # Another process creating the same topic concurrently is fine; the partition
        # count is checked when waiting for the topic either way.
        if code not in (0, TopicAlreadyExistsError.errno):
            message = topic.get("error_message") or ""
            raise TopicError(f"creating topic {topic.get('name')!r} failed: error {code} {message}")


def _wait_ready(
    admin: KafkaAdminClient,
    topics: dict[str, int],
    existed: set[str],
    deadline: float,
    any_count: frozenset[str],
) -> None:
    while True:
        described = {t["name"]: t for t in admin.describe_topics(list(topics))}
        problems = {
            name: _problem(described.get(name), None if name in any_count and name in existed else n)
            for name, n in topics.items()
        }
        problems = {name: p for name, p in problems.items() if p}
        wrong = {name: p for name, p in problems.items() if name in existed and p.startswith("has ")}
        if wrong:
            raise TopicError(f"existing topics do not have the required partitions: {wrong}")
        if not problems:
            return
        if time.monotonic() >= deadline:
            raise TopicError(f"topics not ready in time: {problems}")
        time.sleep(0.1)


def _problem(info: dict[str, Any] | None, partitions: int | None) -> str:
    """Why a described topic is not usable yet, or '' when it is (None: any partition count)."""
    if info is None or info.get("error_code", 0) != 0:
        return "not in metadata"
    parts = info.get("partitions") or []
    if not parts or (partitions is not None and len(parts) != partitions):
        return f"has {len(parts)} partitions, not {partitions}"
    leaderless = sorted(p["partition_index"] for p in parts if p.get("leader_id", -1) < 0)
    if leaderless or any(p.get("error_code", 0) != 0 for p in parts):
        return f"partitions without a leader: {leaderless}"
    return ""


def ensure_topics(settings: Settings) -> None:
    """Create the events, dead-letter and trigger topics if missing."""
    create_topics(
        settings.kafka_bootstrap,
        {
            settings.events_topic: settings.partitions,
            settings.dlq_topic: settings.partitions,
            # one trigger partition per events partition: each has a single writer, its owner
            settings.triggers_topic: settings.partitions,
        },
        **kafka_python_options(settings),
    )


def ensure_webhook_topics(settings: Settings) -> None:
    """Create the webhook dead-letter topic if missing (the relay keys its messages by user,
    so an existing one may have any partition count)."""
    name = settings.webhook_dlq_topic
    create_topics(
        settings.kafka_bootstrap,
        {name: settings.partitions},
        any_count={name},
        **kafka_python_options(settings),
    )
