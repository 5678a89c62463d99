"""The session's broker restarts mid-stream, under a running worker.

- **Apache Kafka** keeps its log and group offsets in its data dir: after the restart the
  worker (the same process) carries on, and the state equals `tests.reference` exactly,
  nothing re-based.
- **Tansu** (memory-only) comes back empty: topics, offsets and group are gone, and the
  new log numbers its messages from 0 again, under offsets Redis recorded as applied
  from the old one. Without a check those new events would be skipped as replays
  (silently: seen before this test existed). The worker compares the events topic's id
  with the one stored next to the applied offsets, re-bases each partition once (counted
  in `log_rebased`, one warning), and applies the new log from its start. Events that
  only the old log held cannot come back from the broker; the test then does what a
  source system must do after losing a memory-only broker, send everything again, and
  de-duplication applies each event exactly once.

The same re-base is tested on Apache Kafka by deleting and creating the topic under
the running worker. Whichever way the new log comes, the worker starts each assigned
partition where Redis says (`PartitionProcessor.assigned`), not where the broker's
committed offsets say: those can number the old log.

Both leave the broker running for the tests after them (same port).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from kafka import KafkaAdminClient

from service.api.app import create_api
from service.core import counters as ctr
from service.core.intake import Message
from service.core.partitioning import partition_for
from service.kafka.topics import ensure_topics
from service.storage.client import redis_client
from service.storage.store import RedisStore
from service.worker.claims import RepositionRequired
from service.worker.outgoing import Outgoing
from service.worker.processor import PartitionProcessor
from service.worker.topic_identity import TopicIdentity
from tests.faults.scale import full
from tests.processes import ServiceProcess, applied_offsets, wait_for
from tests.stack import (
    T0,
    Stack,
    assert_matches_reference,
    assert_transitions_match,
    history,
    make_stack,
    read_counters,
    visit,
)

pytestmark = pytest.mark.integration

USERS = 2000 if full() else 300


@pytest.fixture
def stack(broker: Any, redis_url: str, tmp_path: Path) -> Stack:
    # One message per batch (and one event per message, below): slow enough to restart mid-way.
    # Metadata every 2 s: a recreated topic is seen that soon (30 s by default).
    return make_stack(
        broker, redis_url, tmp_path, LIFECYCLE_BATCH_MESSAGES="1", LIFECYCLE_METADATA_MAX_AGE="2"
    )


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    app = create_api(stack.settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api") as client:
        yield client


def applied_total(stack: Stack) -> int:
    s = stack.settings
    return sum(o + 1 for o in applied_offsets(s.redis_url, s.key_prefix, stack.partitions).values())


def wait_started_applying(stack: Stack, worker: ServiceProcess) -> None:
    wait_for(lambda: applied_total(stack) > 0, 60, "the worker's first commit", worker)


async def assert_exact(
    stack: Stack, api: httpx.AsyncClient, worker: ServiceProcess, events: list[Any]
) -> None:
    await assert_matches_reference(api, events, stack.settings.loaded_profile)
    await assert_transitions_match(stack, worker, events)
    counters = await read_counters(stack)
    distinct = len({e["event_id"] for e in events})
    assert counters[ctr.APPLIED] + counters.get(ctr.UNKNOWN_USER, 0) == distinct  # each event once


async def test_kafka_restart_mid_stream_loses_and_doubles_nothing(
    broker: Any, stack: Stack, api: httpx.AsyncClient
) -> None:
    if broker.kind != "kafka":
        pytest.skip(
            "Tansu keeps nothing across a restart: see the Tansu test; run with LIFECYCLE_TEST_BROKER=kafka"
        )
    events = history(USERS)
    half = len(events) // 2
    stack.publish(events[:half], single=True)
    worker = stack.worker()
    try:
        wait_started_applying(stack, worker)
        at_restart = applied_total(stack)
        assert at_restart < half, "the worker must still be busy with the first half: restart mid-stream"
        broker.process.restart()  # SIGTERM, then the same port and data dir
        stack.publish(events[half:])
        stack.wait_applied(worker)
        assert worker.alive(), worker.log_tail()
        await assert_exact(stack, api, worker, events)
        assert not (await read_counters(stack)).get(ctr.LOG_REBASED)  # the same log throughout
        print(f"\nKafka restarted when {at_restart} of the first {half} messages were applied")
    finally:
        worker.stop()
        broker.process.start()  # a no-op when it runs


async def test_a_new_log_under_a_running_worker_is_rebased_and_a_resent_source_applied_once(
    broker: Any, stack: Stack, api: httpx.AsyncClient
) -> None:
    """Tansu restarted, or on Apache Kafka the topic deleted and created again: either way
    the events topic becomes a new log under a worker that keeps running."""
    events = history(USERS)
    half = len(events) // 2
    stack.publish(events[:half])
    worker = stack.worker()
    try:
        stack.wait_applied(worker)
        stack.publish(events[half : half + half // 4])  # in the old log only, maybe applied: lost with it
        if broker.kind == "tansu":
            broker.process.restart()  # memory-only: it comes back empty
            ensure_topics(stack.settings)  # what the deployment's topic provisioning does
        else:
            recreate_events_topic(stack)
        stack.published.clear()  # offsets number the new log
        stack.publish(events)  # the source sends everything again
        stack.wait_applied(worker)
        assert worker.alive(), worker.log_tail()
        await assert_exact(stack, api, worker, events)
        counters = await read_counters(stack)
        assert counters[ctr.LOG_REBASED] == stack.partitions  # each partition re-based once
        log = worker.log_path.read_text()
        assert log.count("the events topic is a new log") == stack.partitions
    finally:
        worker.stop()
        broker.process.start()


class NoSink:
    """These batches hold only valid events of their own partition: nothing is ever sent."""

    async def send_and_wait(self, messages: Sequence[Outgoing]) -> list[tuple[Outgoing, BaseException]]:
        raise AssertionError(f"unexpected messages for the broker: {messages}")

    async def last_header(self, topic: str, partition: int, header: str) -> list[bytes]:
        raise AssertionError("no relay in this test")


def recreate_events_topic(stack: Stack) -> None:
    s = stack.settings
    admin = KafkaAdminClient(bootstrap_servers=s.kafka_bootstrap)
    try:
        admin.delete_topics([s.events_topic])
        wait_for(lambda: s.events_topic not in admin.list_topics(), 30, "the topic's deletion")
    finally:
        admin.close()
    ensure_topics(s)


def new_processor(stack: Stack, redis: Any, assigned: bool = True) -> PartitionProcessor:
    """The worker's processor with the broker's own topic id (`assigned`: Kafka's word)."""
    s = stack.settings
    return PartitionProcessor(
        RedisStore(redis, s.key_prefix, s.dedup_window_s),
        NoSink(),
        s,
        s.loaded_profile,
        is_assigned=lambda partition: assigned,
        log_id=TopicIdentity(s.bootstrap_servers, s.events_topic),
    )


def partition_0_messages(stack: Stack, prefix: str, at: int, first: int = 0) -> list[Message]:
    """Ten visits of ten users of partition 0, at offsets `first`, `first + 1`, ..."""
    users = [u for u in (f"user-{i}" for i in range(400)) if partition_for(u, stack.partitions) == 0][:10]
    return [
        (first + i, uid.encode(), orjson.dumps(visit(f"{prefix}{i}", uid, at + i)))
        for i, uid in enumerate(users)
    ]


async def test_a_recreated_topic_is_caught_when_offsets_go_back_without_a_rebalance(stack: Stack) -> None:
    """The path with no rebalance: the consumer, still assigned, is reset to the new log's start.

    Messages are handed to the worker's processor as its consumer would; the topic id is
    the broker's own, before and after the topic is deleted and created again.
    """
    redis = redis_client(stack.settings)
    processor = new_processor(stack, redis)
    try:
        assert (await processor.process(0, partition_0_messages(stack, "a", T0))).applied == 10
        replay = await processor.process(0, partition_0_messages(stack, "a", T0)[:5])  # same log: a replay
        assert (replay.applied, replay.replayed) == (0, 5)
        assert not (await read_counters(stack)).get(ctr.LOG_REBASED)

        recreate_events_topic(stack)
        fresh = await processor.process(0, partition_0_messages(stack, "b", T0 + 1000)[:5])  # offsets 0..4
        assert (fresh.applied, fresh.replayed) == (5, 0)
        counters = await read_counters(stack)
        assert counters[ctr.LOG_REBASED] == 1
        assert counters[ctr.APPLIED] == 10 + 5
    finally:
        await redis.aclose()


async def test_an_assignment_starts_where_redis_says_and_a_new_log_at_its_start(stack: Stack) -> None:
    """`assigned` is what the worker seeks to on every assignment, whatever the broker committed."""
    redis = redis_client(stack.settings)
    processor = new_processor(stack, redis)
    try:
        assert await processor.assigned([0, 1]) == {0: 0, 1: 0}  # nothing applied yet
        await processor.process(0, partition_0_messages(stack, "a", T0))  # offsets 0..9
        assert await processor.assigned([0, 1]) == {0: 10, 1: 0}
        recreate_events_topic(stack)
        assert await processor.assigned([0, 1]) == {0: 0, 1: 0}  # re-based: the new log from its start
        assert (await read_counters(stack))[ctr.LOG_REBASED] == 1
        stale = await processor.process(0, partition_0_messages(stack, "a", T0, first=5))  # the old log's
        assert stale.fenced and stale.applied == 0
        fresh = await processor.process(0, partition_0_messages(stack, "b", T0 + 1000))
        assert (fresh.applied, fresh.replayed) == (10, 0)
        assert await processor.assigned([0]) == {0: 10}
    finally:
        await redis.aclose()


async def test_a_new_log_found_past_its_start_outside_a_rebalance_stops_the_worker(stack: Stack) -> None:
    """A claim after a fence finds a new log while the consumer is at offset 5 of it: offsets
    0..4 may be behind it. The worker must exit (nothing applied), and the re-base it
    recorded makes the restart's assignment start the partition at 0."""
    redis = redis_client(stack.settings)
    processor = new_processor(stack, redis)
    try:
        await processor.process(0, partition_0_messages(stack, "a", T0))
        recreate_events_topic(stack)
        processor.release(0)  # what a fence does
        with pytest.raises(RepositionRequired, match="partition 0 was re-based outside a rebalance"):
            await processor.process(0, partition_0_messages(stack, "b", T0 + 1000, first=5))
        assert (await read_counters(stack))[ctr.APPLIED] == 10  # nothing of the batch applied
        restarted = new_processor(stack, redis)
        assert await restarted.assigned([0]) == {0: 0}
        assert (await read_counters(stack))[ctr.LOG_REBASED] == 1
    finally:
        await redis.aclose()


async def test_a_batch_in_hand_of_a_revoked_partition_is_dropped_unclaimed(stack: Stack) -> None:
    """Revoked mid-batch: dropping it is safe because the next owner starts where Redis says,
    and claiming would fence that owner."""
    s = stack.settings
    redis = redis_client(s)
    try:
        owner = new_processor(stack, redis)
        await owner.process(0, partition_0_messages(stack, "a", T0))
        gen = (await RedisStore(redis, s.key_prefix, s.dedup_window_s).meta(0)).gen
        revoked = new_processor(stack, redis, assigned=False)
        stats = await revoked.process(0, partition_0_messages(stack, "b", T0 + 1000, first=10))
        assert stats.fenced and stats.applied == 0
        meta = await RedisStore(redis, s.key_prefix, s.dedup_window_s).meta(0)
        assert (meta.gen, meta.applied_offset) == (gen, 9)  # not claimed, nothing applied
    finally:
        await redis.aclose()
