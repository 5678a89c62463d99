"""What the worker's Faust agent and sweep timer do with each batch and each tick.

Per batch: drop what a rebalance made stale, apply each partition's messages in turn,
report the consumer lag. Per tick: sweep and relay every positioned partition. Errors
no retry can cure end the worker (`service.worker.exits`): a batch left with an error
would be acknowledged unapplied.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol

from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from service.storage.store import StoreError
from service.worker.claims import RepositionRequired
from service.worker.exits import Crash, crash, exit_for
from service.worker.processor import PartitionProcessor
from service.worker.rebalance import Consumed, Rebalance
from service.worker.topic_identity import BrokerUnavailable

log = logging.getLogger(__name__)


class Highwater(Protocol):
    def highwater(self, partition: int) -> int | None:
        """The partition's next offset to be written, if the consumer knows it (and still has it)."""
        ...


class Agent:
    """Hands batches and ticks to the processor; ends the worker when it must."""

    def __init__(
        self,
        processor: PartitionProcessor,
        rebalance: Rebalance,
        consumer: Highwater,
        relay_batch: int,
        crash: Crash = crash,
    ) -> None:
        self.processor = processor
        self.rebalance = rebalance
        self.consumer = consumer
        self.relay_batch = relay_batch
        self.crash = crash

    async def batch(self, messages: Iterable[Consumed]) -> None:
        """Apply one batch taken from the events topic, partition by partition."""
        processor = self.processor
        metrics = processor.metrics
        by_partition = self.rebalance.current(messages)
        try:
            for partition, batch in by_partition.items():
                await processor.process(partition, batch)
                highwater = self.consumer.highwater(partition)
                if highwater is not None and metrics is not None:
                    metrics.consumer_lag.labels(str(partition)).set(highwater - batch[-1][0] - 1)
        except BaseException as exc:
            # The batch is acknowledged on the way out, even on error: die before it can,
            # so nothing unapplied is ever committed (crash-only, like kill -9).
            exit_for(exc, "applying a batch", self.crash)

    async def tick(self) -> None:
        """Sweep and relay every positioned partition; Redis or broker trouble waits for the next tick."""
        processor = self.processor
        outage = processor.outage
        if not outage.retry_due():  # Redis is down: sweeps try no more often than batches do
            return
        for partition in processor.partitions.positioned():
            try:
                await processor.sweep(partition)
                while await processor.relay(partition) >= self.relay_batch:
                    pass
                if outage.writes_refused:  # a sweep with nothing to do only read: try a write
                    await processor.store.probe_write()
                outage.recovered()
            except RepositionRequired as exc:
                exit_for(exc, "sweeping", self.crash)
            except (
                RedisError,
                OSError,
            ) as exc:  # Redis away: one warning per outage, see service.worker.outage
                outage.failed(exc)
                return
            except (KafkaError, BrokerUnavailable, StoreError) as exc:  # the next tick tries again
                log.warning("sweep or relay of partition %d skipped: %s", partition, exc)
                return
