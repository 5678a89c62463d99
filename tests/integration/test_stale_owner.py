"""A worker fenced while it still believes it owns the partition waits before claiming back.

After a freeze (a long GC pause, SIGSTOP, a VM migration) a worker's session may have
expired while it slept: the group gave its partitions to another worker, which claimed
them in Redis. The worker wakes still believing them assigned until its next heartbeat
tells it otherwise. If it claimed back at once on the first fence, the rightful owner
would be fenced in turn, claim again, and the two would trade the partition until the
revocation arrived. A fenced worker therefore holds off claiming for a while (two
heartbeats in the worker), by batch or by sweep; only the rightful owner, still assigned
when the hold ends, claims again. Real redis-server, no broker: the processors are given
Kafka's word on ownership directly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
import pytest
from redis.asyncio import Redis

from service.core.intake import Message
from service.settings import Settings
from service.storage.store import RedisStore
from service.worker.processor import PartitionProcessor
from tests.integration.test_rebalance import NoSink
from tests.stack import T0, visit

pytestmark = pytest.mark.integration

HOLD = 1.0


def messages(first: int, count: int = 3) -> list[Message]:
    return [
        (first + i, f"u{i}".encode(), orjson.dumps(visit(f"e{first + i}", f"u{i}", T0 + first + i)))
        for i in range(count)
    ]


class Owner:
    """One worker's processor of partition 0, and whether Kafka (still) assigns it."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.assigned_until = float("inf")
        self.processor = PartitionProcessor(
            RedisStore(redis, settings.key_prefix, settings.dedup_window_s),
            NoSink(),  # visits fire no trigger and nothing is relayed: nothing is sent
            settings,
            settings.loaded_profile,
            wall_clock=lambda: T0 / 1000,
            is_assigned=lambda partition: time.monotonic() < self.assigned_until,
            reclaim_hold=HOLD,
        )


async def generation(redis: Redis, store: RedisStore) -> int:
    return int(await redis.hget(store.keys(0).meta, "gen") or 0)


@asynccontextmanager
async def two_owners(redis_url: str) -> AsyncIterator[tuple[Redis, Owner, Owner]]:
    """a applied a batch, then the group moved the partition to b, which claimed it."""
    s = Settings(redis_url=redis_url, partitions=1, clock="event", profile="daily_app", key_prefix="stale")
    redis = Redis.from_url(redis_url)
    try:
        stale, rightful = Owner(redis, s), Owner(redis, s)
        assert (await stale.processor.process(0, messages(0))).applied == 3
        assert (await rightful.processor.process(0, messages(3))).applied == 3
        yield redis, stale, rightful
    finally:
        await redis.aclose()


async def test_a_worker_fenced_by_the_new_owner_drops_its_batch_once_revoked_without_claiming_back(
    redis_url: str,
) -> None:
    async with two_owners(redis_url) as (redis, stale, rightful):
        store = rightful.processor.store
        before = await generation(redis, store)
        stale.assigned_until = time.monotonic() + HOLD / 2  # its heartbeat brings the revocation soon
        stats = await stale.processor.process(0, messages(6))
        assert stats.fenced and not stats.applied
        assert await generation(redis, store) == before, "the stale owner claimed the partition back"
        assert (await rightful.processor.process(0, messages(6))).applied == 3  # b was never fenced


async def test_a_fenced_worker_does_not_claim_back_by_sweeping_during_the_hold(
    redis_url: str,
) -> None:
    async with two_owners(redis_url) as (redis, stale, rightful):
        store = rightful.processor.store
        before = await generation(redis, store)
        stale.assigned_until = time.monotonic() + HOLD / 2
        fenced = asyncio.create_task(stale.processor.process(0, messages(6)))
        await asyncio.sleep(HOLD / 4)  # fenced once, and waiting
        assert await stale.processor.sweep(0) == 0
        assert await generation(redis, store) == before, "a sweep claimed the partition back"
        assert (await fenced).fenced
        assert await generation(redis, store) == before


async def test_the_rightful_owner_fenced_by_a_stale_claim_claims_again_after_the_hold(
    redis_url: str,
) -> None:
    async with two_owners(redis_url) as (_, _, rightful):
        store = rightful.processor.store
        await store.claim(0)  # a stale worker's claim slipped in before its revocation
        started = time.monotonic()
        stats = await rightful.processor.process(0, messages(6))
        assert stats.applied == 3 and not stats.fenced
        assert time.monotonic() - started >= HOLD  # it let the stale worker's revocation arrive first
