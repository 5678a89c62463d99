"""Redis bytes per user at 1,000,000 users, and the cost of a sweep against its crossings.

Fills a fresh redis-server with N users through the worker's own code (`bench.whatif`),
sweeps once as a running worker does, measures `INFO memory` before and after, then
times sweeps of every partition on the event clock: one in which nothing crosses a
threshold (the clock moves by 1 ms) and one in which about 1% of the users do (the clock
moves by a day: the users' last activity is spread over 400 days, and four thresholds
are crossed at a rate of 1/400 per day each).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bench.whatif import NOW, fill
from service.core.durations import DAY_MS
from service.dev.redis_server import RedisServer
from service.settings import Settings
from service.storage.store import RedisStore
from service.worker.outgoing import Outgoing
from service.worker.processor import PartitionProcessor


class _NoSink:
    """Sweeps publish nothing themselves (the relay does): a sink that must not be used."""

    async def send_and_wait(self, messages: Sequence[Outgoing]) -> list[tuple[Outgoing, BaseException]]:
        raise AssertionError("a sweep does not send")

    async def last_header(self, topic: str, partition: int, header: str) -> list[bytes]:
        raise AssertionError("a sweep does not relay")


async def _run(users: int, partitions: int, workdir: Path) -> dict[str, Any]:
    with RedisServer(workdir / "redis") as server:
        settings = Settings(redis_url=server.url, partitions=partitions, clock="event", profile="daily_app")
        redis = Redis.from_url(server.url)
        before = (await redis.info("memory"))["used_memory"]
        await fill(redis, settings, users)
        store = RedisStore(redis, settings.key_prefix, settings.dedup_window_s)
        processor = PartitionProcessor(store, _NoSink(), settings, settings.loaded_profile)
        for p in range(partitions):
            await redis.hset(store.keys(p).meta, mapping={"swept": NOW - 1, "wm": NOW})
        # `fill` commits batches without the sweep a running worker does every few seconds, so
        # its first_seen index still holds every user; one sweep at the fill's clock prunes it
        # to the users inside the what-if window: the state a live partition is in.
        for p in range(partitions):
            await processor.sweep(p)
        after = (await redis.info("memory"))["used_memory"]
        breakdown = await _breakdown(redis, settings, users)
        timings: dict[str, float] = {}
        changes: dict[str, int] = {}
        for name, clock in (("none", NOW + 1), ("crossing_1pct", NOW + 1 + DAY_MS)):
            for p in range(partitions):
                await redis.hset(store.keys(p).meta, "wm", clock)
            started = time.perf_counter()
            changes[name] = sum([await processor.sweep(p) for p in range(partitions)])
            timings[name] = time.perf_counter() - started
        await redis.aclose()
    return {
        "users": users,
        "redis_bytes_per_user": round((after - before) / users, 1),
        "redis_bytes_per_user_by_key": breakdown,
        "sweep_s": {k: round(v, 4) for k, v in timings.items()},
        "sweep_changes": changes,
    }


async def _breakdown(redis: Redis, settings: Settings, users: int) -> dict[str, float]:
    """Bytes per user by kind of key (`MEMORY USAGE`, all elements sampled): where memory goes."""
    totals: dict[str, int] = {}
    async for raw in redis.scan_iter(match=f"{settings.key_prefix}:*", count=1000):
        key = raw.decode()
        kind = key.split("}:", 1)[1].split(":", 1)[0]  # users, la, fs, rfm, ctr, cohorts, meta, ...
        totals[kind] = totals.get(kind, 0) + int(await redis.memory_usage(key, samples=0) or 0)
    return {kind: round(n / users, 1) for kind, n in sorted(totals.items(), key=lambda kv: -kv[1])}


def memory_and_sweep(users: int, partitions: int, workdir: Path) -> dict[str, Any]:
    return asyncio.run(_run(users, partitions, workdir))
