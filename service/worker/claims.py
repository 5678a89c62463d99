"""Who owns a partition in Redis, and which log its applied offsets number.

A claim bumps the partition's owner generation in Redis, which fences every earlier
owner: their commits fail from then on. With the claim, the events topic's id is
compared with the one recorded next to the applied offset: a different id means a new
log (the topic recreated, or a memory-only broker restarted) whose offsets restart at
0, and the partition is re-based (see `Claims._check_log`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from service.storage.store import RedisStore
from service.worker.metrics import WorkerMetrics
from service.worker.partition import Partition, Partitions
from service.worker.transaction import check_fence

log = logging.getLogger(__name__)


class LogIdentity(Protocol):
    """Which log the events topic is now (its topic id; None if the broker does not say)."""

    async def __call__(self) -> str | None: ...

    def forget(self) -> None:
        """Drop any cached answer: the next call asks the broker."""
        ...


class RepositionRequired(RuntimeError):
    """A partition was re-based outside a rebalance: the consumer's position numbers the old
    log, so events of the new one may already be behind it. The worker exits; the next
    assignment starts the partition from Redis's position (`PartitionProcessor.assigned`)."""


class Claims:
    """Claims, releases and revocations of this worker's partitions."""

    def __init__(
        self,
        store: RedisStore,
        partitions: Partitions,
        log_id: LogIdentity | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.store = store
        self.partitions = partitions
        self.log_id = log_id  # the events topic's id; None: offsets are trusted to number one log
        self.metrics = metrics

    def release(self, partition: int) -> None:
        """Forget ownership (fenced, offsets went back); the next batch claims it anew."""
        self.partitions[partition].release()
        if self.log_id is not None:
            self.log_id.forget()

    def fenced(self, partition: int, hold: float) -> None:
        """Another worker claimed it: release, and claim back only after `hold` seconds
        (`Partition.fenced`), however the next batch or sweep asks."""
        self.partitions[partition].fenced(hold)
        if self.log_id is not None:
            self.log_id.forget()

    def revoke(self, partition: int) -> None:
        """Kafka revoked the partition: forget ownership and position until it is assigned again."""
        self.partitions[partition].revoke()
        if self.log_id is not None:
            self.log_id.forget()

    async def assigned(self, partitions: Sequence[int]) -> dict[int, int]:
        """Claim newly assigned partitions and say where their consumer must start.

        Called on every assignment, before any message flows. Redis, not the broker's
        committed offsets, decides where each partition starts: right after the offset it
        recorded as applied, or at the start of a new log after a re-base. The broker's
        committed offsets can be ahead of Redis (a batch acknowledged but not applied, or
        offsets of an older log committed to a broker that lost its log), and trusting
        them would skip events.
        """
        for partition in partitions:
            self.release(partition)  # a fresh claim, and a fresh look at the topic id (one lookup)
            self.partitions[partition].reclaim_at = 0.0  # Kafka's word: no hold on this claim
        starts: dict[int, int] = {}
        for partition in partitions:
            part = self.partitions[partition]
            async with part.lock:
                part.gen = None  # a batch in hand may have claimed meanwhile
                gen, rebased = await self._claim(partition)
                if rebased:
                    part.new_log = True
                meta = await self.store.meta(partition)
                check_fence(meta, gen)
                part.gen = gen
                starts[partition] = meta.applied_offset + 1
        return starts

    async def generation(self, part: Partition, first_offset: int | None = None) -> str:
        """Our generation for the partition, claiming it first (callers hold its lock).

        A claim outside `assigned` (after a fence, or offsets that went back) that finds
        a new log is safe only if the batch in hand starts that log (`first_offset` 0):
        otherwise the consumer may already be past some of its events.
        """
        gen = part.gen
        if gen is None:
            gen, rebased = await self._claim(part.number)
            if rebased and first_offset != 0:
                raise RepositionRequired(
                    f"partition {part.number} was re-based outside a rebalance while its consumer is at "
                    f"offset {first_offset}; exiting so the restart starts it from the new log's start"
                )
            part.gen = gen
        return gen

    async def _claim(self, partition: int) -> tuple[str, bool]:
        """Claim the partition (fencing older owners); True if its log was re-based."""
        gen = await self.store.claim(partition)
        rebased = await self._check_log(partition, gen) if self.log_id is not None else False
        return gen, rebased

    async def _check_log(self, partition: int, gen: str) -> bool:
        """Make sure the stored applied offset numbers the events topic as it is now.

        If the topic id differs from the one recorded with the offset, the topic is a new
        log (recreated, or a memory-only broker restarted): its offsets restart at 0, and
        trusting the old offset would skip its events as replays. The partition is then
        re-based: offset reset, counted (`log_rebased`), one warning. Events that were only
        in the old log cannot be recovered here; producers that send them again are
        applied once (de-duplication window).
        """
        assert self.log_id is not None
        current = await self.log_id()
        if current is None:
            return False
        meta = await self.store.meta(partition)
        check_fence(meta, gen)
        if meta.log == current:
            return False
        rebase = bool(meta.log) and meta.applied_offset >= 0
        if rebase:
            log.warning(
                "partition %d: the events topic is a new log (topic id %s, was %s) while offsets up to %d "
                "were applied from the old one; re-basing: its offsets are applied from the start, "
                "events only the old log held are lost unless producers send them again",
                partition,
                current,
                meta.log,
                meta.applied_offset,
            )
        await self.store.set_log(partition, meta, current, rebase=rebase)
        if rebase and self.metrics:
            self.metrics.log_rebased.inc()
        return rebase
