"""What /metrics costs Redis: scrapes within the cache time share one computation, and one
computation walks a bounded number of named audiences (the rest said in a log line)."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from redis.asyncio import Redis

from service.api.app import create_api
from service.core.profile import load_profile
from service.core.records import UserRecord
from service.settings import Settings
from service.storage.queries import Queries

pytestmark = pytest.mark.integration

NOW = 1_790_000_000_000
DAY = 86_400_000
PREFIX = "mc"


def _settings(redis_url: str, **extra: object) -> Settings:
    return Settings(redis_url=redis_url, key_prefix=PREFIX, partitions=2, clock="event", **extra)  # type: ignore[arg-type]


async def _users(redis: Redis, n: int) -> None:
    parts = Queries(redis, PREFIX, 2, load_profile("daily_app"), "event").parts
    for i in range(n):
        k = parts[i % 2]
        channel = ("ads", "organic", "search")[i % 3]
        last = NOW - (i % 40) * DAY
        rec = UserRecord(first_seen=NOW - 100 * DAY, last_active=last, seen_until=NOW, channel=channel)
        await redis.hset(k.users, f"u-{i:03d}", rec.pack())
        await redis.zadd(k.active(channel), {f"u-{i:03d}": last})
        await redis.sadd(k.channels, channel)
        await redis.hset(k.meta, "wm", NOW)


async def _calls(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return sum(int(v["calls"]) for name, v in stats.items() if name != "cmdstat_info")


def _population(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(("lifecycle_users{", "lifecycle_audience"))]


async def test_scrapes_within_the_cache_time_cost_one_computation(redis_url: str) -> None:
    async with Redis.from_url(redis_url) as redis:
        await _users(redis, 120)
        app = create_api(_settings(redis_url, metrics_cache=60))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api") as api:
            before = await _calls(redis)
            first = (await api.get("/metrics")).text
            computed = await _calls(redis) - before
            assert _population(first), first[-2000:]
            before = await _calls(redis)
            for _ in range(5):
                again = (await api.get("/metrics")).text
                assert _population(again) == _population(first)
            cached = await _calls(redis) - before
        assert computed > 50, computed
        assert cached <= 5 * 3, f"5 scrapes in the cache time cost {cached} Redis commands (one: {computed})"


async def test_concurrent_scrapes_wait_for_one_computation(redis_url: str) -> None:
    async with Redis.from_url(redis_url) as redis:
        await _users(redis, 120)
        app = create_api(_settings(redis_url, metrics_cache=60))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api") as api:
            before = await _calls(redis)
            await api.get("/metrics")
            one = await _calls(redis) - before
        await redis.delete(f"{PREFIX}:metrics:exporter")  # the next process takes the lease at once
        app = create_api(_settings(redis_url, metrics_cache=60))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api") as api:
            before = await _calls(redis)
            replies = await asyncio.gather(*(api.get("/metrics") for _ in range(8)))
            eight = await _calls(redis) - before
        assert all(_population(r.text) for r in replies)
        assert eight < 2 * one, f"8 concurrent scrapes cost {eight} commands, one computation {one}"


async def test_named_audience_walks_per_computation_are_bounded_and_logged(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with Redis.from_url(redis_url) as redis:
        await _users(redis, 60)
    app = create_api(_settings(redis_url, metrics_max_audience_walks=0))
    with caplog.at_level(logging.WARNING, logger="service.api.population"):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api") as api:
            text = (await api.get("/metrics")).text
    assert 'lifecycle_audience_users{audience="silent_this_week"}' in text  # range counts: no walk
    assert 'audience="registered_no_order"' not in text  # needs a walk: over the bound
    assert any("registered_no_order" in r.getMessage() and "WALKS" in r.getMessage() for r in caplog.records)
