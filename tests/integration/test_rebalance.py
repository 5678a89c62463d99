"""The worker's rebalance and batch hand-over, on the real broker and redis-server.

`Rebalance.assigned` commits and seeks each assigned partition to Redis's position (not
the broker's); `Rebalance.current` drops messages taken before the last rebalance; the
`Agent` ends the worker with 75 when a partition must be positioned afresh. The
consumer here is a plain aiokafka consumer with the partitions assigned by hand, in the
group the worker's app id names; Faust's own consumer goes through the same port
(`service.worker.faust_adapters.FaustConsumer`) in the end-to-end tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types.tuples import Message as FaustMessage
from kafka import KafkaAdminClient

from service.core import counters as ctr
from service.core.intake import Message
from service.core.partitioning import partition_for
from service.kafka.topics import ensure_topics
from service.storage.client import redis_client
from service.storage.store import RedisStore
from service.worker.agent import Agent
from service.worker.exits import EX_TEMPFAIL
from service.worker.outgoing import Outgoing
from service.worker.partition import Partitions
from service.worker.processor import PartitionProcessor
from service.worker.rebalance import Rebalance
from service.worker.topic_identity import TopicIdentity
from tests.processes import wait_for
from tests.stack import T0, Stack, read_counters, visit

pytestmark = pytest.mark.integration


class Exited(Exception):
    def __init__(self, reason: str, code: int) -> None:
        super().__init__(reason, code)
        self.reason = reason
        self.code = code


def record_exit(reason: str, code: int) -> NoReturn:
    """What the worker would end with, as an exception the test can catch."""
    raise Exited(reason, code)


class AiokafkaConsumer:
    """The worker's consumer port over a plain aiokafka consumer (`Rebalance`'s `Consumer`)."""

    def __init__(self, consumer: AIOKafkaConsumer, topic: str, partitions: list[int]) -> None:
        self.consumer = consumer
        self.topic = topic
        self.partitions = partitions
        self.gen = 1  # what a group rebalance would advance
        self.group_moved_on = False  # the group rebalanced without us yet: commits fail

    def generation(self) -> int:
        return self.gen

    def assignment(self) -> list[int]:
        return list(self.partitions)

    async def commit(self, offsets: dict[int, int]) -> bool:
        if self.group_moved_on:  # Faust's commit answers False on "already rebalanced"
            return False
        await self.consumer.commit({TopicPartition(self.topic, p): o for p, o in offsets.items()})
        return True

    async def seek(self, partition: int, offset: int) -> None:
        self.consumer.seek(TopicPartition(self.topic, partition), offset)

    def highwater(self, partition: int) -> int | None:
        return self.consumer.highwater(TopicPartition(self.topic, partition))


class NoSink:
    async def send_and_wait(self, messages: Any) -> list[tuple[Outgoing, BaseException]]:
        raise AssertionError(f"nothing to dead-letter or re-route here: {list[Outgoing](messages)}")

    async def last_header(self, topic: str, partition: int, header: str) -> list[bytes]:
        raise AssertionError("no relay in this test")


@dataclass
class Worker:
    """The worker's objects wired as `stream_topologies.app` wires them, on a plain consumer."""

    consumer: AiokafkaConsumer
    processor: PartitionProcessor
    rebalance: Rebalance
    agent: Agent


@asynccontextmanager
async def running(stack: Stack) -> AsyncIterator[Worker]:
    """Started in the test's own event loop (a fixture's loop would not run the consumer's tasks)."""
    s = stack.settings
    kafka = AIOKafkaConsumer(bootstrap_servers=s.kafka_bootstrap, group_id=s.app_id, enable_auto_commit=False)
    await kafka.start()
    kafka.assign([TopicPartition(s.events_topic, 0), TopicPartition(s.events_topic, 1)])
    redis = redis_client(s)
    consumer = AiokafkaConsumer(kafka, s.events_topic, [0, 1])
    partitions = Partitions()
    processor = PartitionProcessor(
        RedisStore(redis, s.key_prefix, s.dedup_window_s),
        NoSink(),
        s,
        s.loaded_profile,
        is_assigned=partitions.is_positioned,
        log_id=TopicIdentity(s.bootstrap_servers, s.events_topic),
        partitions=partitions,
    )
    rebalance = Rebalance(processor, consumer, record_exit)
    try:
        yield Worker(
            consumer, processor, rebalance, Agent(processor, rebalance, consumer, s.relay_batch, record_exit)
        )
    finally:
        await kafka.stop()
        await redis.aclose()


def partition_0_messages(stack: Stack, prefix: str, first: int = 0) -> list[Message]:
    users = [u for u in (f"user-{i}" for i in range(400)) if partition_for(u, stack.partitions) == 0][:10]
    return [
        (first + i, uid.encode(), orjson.dumps(visit(f"{prefix}{i}", uid, T0 + i)))
        for i, uid in enumerate(users)
    ]


def consumed(messages: list[Message], generation: int) -> list[FaustMessage]:
    """The messages as Faust's consumer hands them over, taken in consumer generation `generation`."""
    return [
        FaustMessage("t", 0, offset, 0.0, 0, None, key, value, None, generation_id=generation)
        for offset, key, value in messages
    ]


async def test_an_assignment_commits_and_seeks_each_partition_where_redis_says(stack: Stack) -> None:
    async with running(stack) as w:
        partitions = w.processor.partitions
        await w.rebalance.assigned()
        assert partitions.positioned() == [0, 1]
        assert (await w.processor.process(0, partition_0_messages(stack, "a"))).applied == 10  # offsets 0..9
        w.rebalance.revoked([0, 1])
        assert partitions.positioned() == []
        assert not partitions[0].claimed

        await w.rebalance.assigned()
        kafka, topic = w.consumer.consumer, stack.settings.events_topic
        tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
        assert (await kafka.committed(tp0), await kafka.committed(tp1)) == (10, 0)
        assert (await kafka.position(tp0), await kafka.position(tp1)) == (10, 0)
        assert partitions.positioned() == [0, 1]
        assert partitions[0].claimed


async def test_an_assignment_the_group_has_moved_past_is_given_up_without_claiming_again(
    stack: Stack,
) -> None:
    """A worker that froze past its session wakes up positioning its old assignment: the
    claims fence the partitions' new owner, and the commit fails (the group already
    rebalanced). Retrying would claim them again and again until the rejoin; instead the
    claims are given back at once, nothing of that generation is applied, and the rejoin's
    assignment positions the partitions."""
    async with running(stack) as w:
        partitions, store = w.processor.partitions, w.processor.store
        w.consumer.group_moved_on = True
        await asyncio.wait_for(w.rebalance.assigned(), 10)
        assert [int((await store.meta(p)).gen or 0) for p in (0, 1)] == [1, 1]  # claimed once
        assert partitions.positioned() == [] and not partitions[0].claimed
        await w.agent.batch(consumed(partition_0_messages(stack, "a"), 1))
        assert (await store.meta(0)).applied_offset == -1  # nothing of the stale generation

        w.consumer.group_moved_on, w.consumer.gen = False, 2  # the rejoin's assignment
        await w.rebalance.assigned()
        assert partitions.positioned() == [0, 1]
        assert [int((await store.meta(p)).gen or 0) for p in (0, 1)] == [2, 2]


async def test_messages_taken_before_the_last_rebalance_are_dropped(stack: Stack) -> None:
    async with running(stack) as w:
        await w.rebalance.assigned()
        w.consumer.gen = 2
        messages = partition_0_messages(stack, "a")
        await w.agent.batch([*consumed(messages[:4], 1), *consumed(messages[4:], 2)])
        assert (await read_counters(stack))[ctr.APPLIED] == 6
        assert (await w.processor.store.meta(0)).applied_offset == 9


async def test_a_new_log_found_outside_a_rebalance_ends_the_worker_for_a_restart(stack: Stack) -> None:
    """Offsets 0..4 of the new log may lie behind the consumer at 5: only a restart (75), whose
    assignment starts the partition where Redis says, reads them."""
    s = stack.settings
    async with running(stack) as w:
        await w.rebalance.assigned()
        await w.agent.batch(consumed(partition_0_messages(stack, "a"), 1))
        admin = KafkaAdminClient(bootstrap_servers=s.kafka_bootstrap)
        try:
            admin.delete_topics([s.events_topic])
            wait_for(lambda: s.events_topic not in admin.list_topics(), 30, "the topic's deletion")
        finally:
            admin.close()
        ensure_topics(s)
        w.processor.release(0)  # what a fence does
        with pytest.raises(Exited) as info:
            await w.agent.batch(consumed(partition_0_messages(stack, "b", first=5), 1))
        assert info.value.code == EX_TEMPFAIL
        assert "partition 0 was re-based outside a rebalance" in info.value.reason
        assert (await read_counters(stack))[ctr.APPLIED] == 10
