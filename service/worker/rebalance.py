"""The worker's side of a consumer group rebalance: where assigned partitions start.

Redis, not the broker's committed offsets, decides where each assigned partition
starts: right after the offset Redis recorded as applied, or at the start of a new log
after a re-base (`Claims.assigned`). The broker's committed offsets can be
ahead of Redis (a batch acknowledged but not applied, or offsets of an older log
committed to a broker that lost its log), and trusting them would skip events. So on
every assignment the positions are committed to the broker and sought to, before the
flow resumes; and a batch taken before the last rebalance is dropped, since its
partition has been re-read from Redis's position since.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable
from typing import Protocol

from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from service.core.intake import Message
from service.storage.store import StoreError
from service.worker.exits import Crash, crash, exit_for
from service.worker.outage import backoff_delay
from service.worker.processor import PartitionProcessor
from service.worker.topic_identity import BrokerUnavailable

log = logging.getLogger(__name__)


class Consumer(Protocol):
    """The events topic's consumer, as far as positioning needs it."""

    def generation(self) -> int:
        """The consumer group generation this consumer is in (it changes on every rebalance)."""
        ...

    def assignment(self) -> list[int]:
        """The events topic's partitions assigned to this consumer now."""
        ...

    async def commit(self, offsets: dict[int, int]) -> bool:
        """Commit `partition -> next offset` to the group; False if the group already rebalanced
        (the consumer then rejoins, and a new assignment follows)."""
        ...

    async def seek(self, partition: int, offset: int) -> None: ...


class Consumed(Protocol):
    """A consumed message as the consumer hands it over."""

    @property
    def generation_id(self) -> int | None: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


class Rebalance:
    """Positions assigned partitions where Redis says and forgets revoked ones."""

    def __init__(self, processor: PartitionProcessor, consumer: Consumer, crash: Crash = crash) -> None:
        self.processor = processor
        self.consumer = consumer
        self.crash = crash

    async def assigned(self) -> None:
        """Start every assigned partition where Redis says, before the flow resumes.

        Commits the positions and seeks to them too (an offset of 0 is not sought to by
        a seek-to-committed). Retries while Redis or the broker is away (the flow stays
        paused, `/readyz` says so), and gives up when a newer rebalance starts, or already
        has (`_give_up`): its own call does the work.
        """
        processor, consumer = self.processor, self.consumer
        generation = consumer.generation()
        partitions = consumer.assignment()
        attempts = 0
        while True:
            try:
                starts = await processor.assigned(partitions)
                if starts and not await consumer.commit(starts):
                    self._give_up(partitions)
                    return
                for partition, offset in starts.items():
                    await consumer.seek(partition, offset)
                for partition in starts:
                    processor.partitions[partition].positioned = True
                processor.outage.recovered()
                log.info("assigned partitions start at %s", starts)
                return
            except (RedisError, OSError) as exc:
                delay = processor.outage.failed(exc)
            except (KafkaError, BrokerUnavailable, StoreError) as exc:
                delay = backoff_delay(attempts)
                log.warning("positioning the assigned partitions failed (%s); retrying in %.1fs", exc, delay)
            except Exception as exc:  # not CancelledError: a stopping worker cancels this
                exit_for(exc, "positioning the assigned partitions", self.crash)
            attempts += 1
            if consumer.generation() != generation:
                return
            await asyncio.sleep(delay)
            if consumer.generation() != generation:
                return

    def _give_up(self, partitions: Iterable[int]) -> None:
        """The group rebalanced past this assignment (Faust's commit says so only then): the
        consumer rejoins, and the new assignment's own call positions what it gets. A worker
        that froze past its session lands here on waking; retrying would claim partitions
        that are no longer its own again and again, fencing their new owner each time. The
        claims just made are given back, so nothing of this generation is applied."""
        for partition in partitions:
            self.processor.revoke(partition)
        log.info(
            "the group rebalanced while these partitions were positioned; the next assignment positions them"
        )

    def revoked(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self.processor.revoke(partition)

    def current(self, messages: Iterable[Consumed]) -> dict[int, list[Message]]:
        """The messages taken in the consumer's current generation, by partition.

        A message taken before the last rebalance is dropped: its partition has been
        re-read from Redis's position since, and applying it could skip what lies between.
        """
        generation = self.consumer.generation()
        by_partition: dict[int, list[Message]] = defaultdict(list)
        for msg in messages:
            if msg.generation_id != generation:
                continue
            by_partition[msg.partition].append((msg.offset, msg.key, msg.value))
        return by_partition
