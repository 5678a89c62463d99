"""`GET /ops`: what the console's "at a glance" tile shows, from Redis and the broker.

Applied offsets and commit times are in each partition's meta hash; the topic's end
offsets come from the broker through one long-lived consumer (no group, nothing
committed), cached for a second so a dashboard polling it costs the broker little.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from service.core.ops import ops_document
from service.storage.client import as_text
from service.storage.queries import Queries


class EndOffsets:
    """The events topic's end offset per partition, read from the broker."""

    def __init__(self, options: dict[str, Any], topic: str, partitions: int, ttl_s: float = 1.0) -> None:
        self.options = options  # `aiokafka_options`: bootstrap servers and the deployment's SASL/SSL
        self.tps = [TopicPartition(topic, p) for p in range(partitions)]
        self.ttl_s = ttl_s
        self._consumer: AIOKafkaConsumer | None = None
        self._at = float("-inf")
        self._ends: dict[int, int] = {}
        self._lock = asyncio.Lock()

    async def read(self) -> dict[int, int]:
        async with self._lock:
            if time.monotonic() - self._at < self.ttl_s:
                return self._ends
            if self._consumer is None:
                consumer = AIOKafkaConsumer(
                    **self.options,
                    enable_auto_commit=False,
                    group_id=None,
                    request_timeout_ms=3000,
                )
                await asyncio.wait_for(consumer.start(), 5)
                self._consumer = consumer
            try:
                ends = await asyncio.wait_for(self._consumer.end_offsets(self.tps), 5)
            except Exception:
                await self.close()  # start afresh next time: the broker may have moved
                raise
            self._ends = {tp.partition: off for tp, off in ends.items()}
            self._at = time.monotonic()
            return self._ends

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()


class Ops:
    def __init__(self, queries: Queries, ends: EndOffsets) -> None:
        self.queries = queries
        self.ends = ends

    async def positions(self) -> tuple[dict[int, int], dict[int, int]]:
        """Per partition: the last applied offset (-1: none yet) and the last commit's wall time."""
        pipe = self.queries.redis.pipeline(transaction=False)
        for k in self.queries.parts:
            pipe.hmget(k.meta, ["offset", "at"])
        applied: dict[int, int] = {}
        committed: dict[int, int] = {}
        for k, (offset, at) in zip(self.queries.parts, await pipe.execute(), strict=True):
            applied[k.partition] = int(as_text(offset)) if offset is not None else -1
            if at is not None:
                committed[k.partition] = int(as_text(at))
        return applied, committed

    async def document(self) -> dict[str, Any]:
        q = self.queries
        totals = await q.counters()
        applied, committed = await self.positions()
        outbox, _ = await q.trigger_backlog()
        try:
            ends: dict[int, int] | None = await self.ends.read()
            error = None
        except Exception as exc:  # the broker's state is reported, never raised to the operator
            ends, error = None, f"{type(exc).__name__}: {exc}"[:200]
        return {"as_of": await q.now_ms(), **ops_document(totals, applied, committed, ends, outbox, error)}
