"""What-if latency at scale: `GET /lifecycle/what-if` over N users (default 1,000,000).

Fills a fresh redis-server through the worker's own store code (pure `apply_events`, then
the fenced commit), one partition at a time, then times the API answering what-if
questions in-process (ASGI): the cost is range counts on the indexes, so it should not
grow with the number of users. (Redis bytes per user: `bench.population`, after the
sweep that prunes the first_seen index as a running worker does.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis

from service.api.app import create_api
from service.core.batch import apply_events
from service.core.durations import DAY_MS
from service.core.events import Event
from service.core.partitioning import partition_for
from service.dev.redis_server import RedisServer
from service.settings import Settings
from service.storage.store import RedisStore

NOW = 1_790_000_000_000
CHANNELS = ("organic", "search", "social", "referral", "ads")


async def fill(redis: Redis, settings: Settings, users: int) -> None:
    store = RedisStore(redis, settings.key_prefix, settings.dedup_window_s)
    profile = settings.loaded_profile
    rng = random.Random(1)
    per_partition: dict[int, list[Event]] = {p: [] for p in range(settings.partitions)}
    for i in range(users):
        uid = f"user-{i}"
        ts = NOW - int(rng.random() * 400 * DAY_MS)
        per_partition[partition_for(uid, settings.partitions)].append(
            Event(f"e{i}", uid, "visit", ts, rng.choice(CHANNELS))
        )
    for p, events in per_partition.items():
        events.sort(key=lambda e: e.ts)
        await store.claim(p)
        for start in range(0, len(events), 20_000):
            chunk = events[start : start + 20_000]
            snap = await store.load(p, [], {})
            swept = snap.meta.swept_ms or NOW - 401 * DAY_MS
            result = apply_events({}, chunk, swept, profile, settings.first_index_window_ms)
            await store.commit_batch(p, snap.meta, result, offset=start, new_digests={}, swept=swept)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="lifecycle-whatif-"))
    with RedisServer(work / "redis") as server:
        settings = Settings(
            redis_url=server.url, partitions=args.partitions, clock="event", profile="daily_app"
        )
        redis = Redis.from_url(server.url)
        started = time.perf_counter()
        await fill(redis, settings, args.users)
        filled = time.perf_counter() - started
        api = create_api(settings, redis)
        timings = []
        questions = [
            {
                "silent_after": f"{s}d",
                "churn_after": f"{s * 3}d",
                "dead_after": f"{s * 10}d",
                "new_window": "1d",
            }
            for s in range(2, 30)
        ]
        async with httpx.AsyncClient(transport=httpx.ASGITransport(api), base_url="http://api") as client:
            for i in range(args.requests):
                t = time.perf_counter()
                r = await client.get("/lifecycle/what-if", params=questions[i % len(questions)])
                timings.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200 and r.json()["total"] == args.users, r.text
        await redis.aclose()
    timings.sort()
    return {
        "users": args.users,
        "partitions": args.partitions,
        "channels": len(CHANNELS),
        "fill_s": round(filled, 1),
        "what_if_ms": {
            "p50": round(statistics.median(timings), 2),
            "p99": round(timings[int(len(timings) * 0.99) - 1], 2),
            "max": round(timings[-1], 2),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--requests", type=int, default=200)
    result = asyncio.run(main_async(parser.parse_args()))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
