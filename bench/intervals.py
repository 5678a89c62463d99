"""Lifecycle per interval: its Redis bytes per user over 90 days, and the latency of
`GET /lifecycle/intervals` over a year by week.

Fills a fresh redis-server through the worker's own code (pure `apply_events`, then the
fenced commit), one partition at a time, with N users over 90 days: each arrives on a
random day and is active on later days with a probability of its kind (daily 0.6,
weekly 0.15, rare 0.03; a third each), one visit per active day. The cost is measured,
not estimated: `MEMORY USAGE` (every element counted) of the partitions' user hashes as
filled, minus the same once every record is rewritten without its active days, plus the
`lci` hashes' own. Then it times the API answering
a year by week in-process (ASGI): one HMGET per partition, so it does not grow with users.
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
from service.core.calendar import Calendar
from service.core.durations import DAY_MS
from service.core.events import Event
from service.core.partitioning import partition_for
from service.core.records import UserRecord
from service.dev.redis_server import RedisServer
from service.settings import Settings
from service.storage.keys import all_partitions
from service.storage.store import RedisStore

NOW = 1_790_000_000_000
DAYS = 90
CHANNELS = ("organic", "search", "social", "referral", "ads")
KINDS = {"daily": 0.6, "weekly": 0.15, "rare": 0.03}


def history(users: int, partitions: int, seed: int = 1) -> dict[int, list[Event]]:
    """One visit per active day of each user, per partition, in time order."""
    rng = random.Random(seed)
    start = NOW - DAYS * DAY_MS
    out: dict[int, list[Event]] = {p: [] for p in range(partitions)}
    n = 0
    for i in range(users):
        uid = f"user-{i}"
        p_active = KINDS[rng.choice(list(KINDS))]
        first = rng.randrange(DAYS)
        channel = rng.choice(CHANNELS)
        events = out[partition_for(uid, partitions)]
        for day in range(first, DAYS):
            if day == first or rng.random() < p_active:
                ts = start + day * DAY_MS + rng.randrange(DAY_MS)
                events.append(Event(f"e{n}", uid, "visit", ts, channel))
                n += 1
    for events in out.values():
        events.sort(key=lambda e: e.ts)
    return out


async def fill(redis: Redis, settings: Settings, users: int) -> int:
    """Apply the history batch by batch as a worker does; returns the number of events."""
    store = RedisStore(redis, settings.key_prefix, settings.dedup_window_s)
    profile = settings.loaded_profile
    total = 0
    for p, events in history(users, settings.partitions).items():
        records: dict[str, UserRecord | None] = {}
        await store.claim(p)
        for start in range(0, len(events), 20_000):
            chunk = events[start : start + 20_000]
            snap = await store.load(p, [], {})
            swept = snap.meta.swept_ms or NOW - (DAYS + 1) * DAY_MS
            result = apply_events(records, chunk, swept, profile, settings.first_index_window_ms)
            await store.commit_batch(p, snap.meta, result, offset=start, new_digests={}, swept=swept)
            records.update(result.records)
        total += len(events)
    return total


async def strip(redis: Redis, settings: Settings) -> dict[str, float]:
    """Rewrite every record without its active days, then delete the `lci` hashes; returns the
    mean stored length of the active days in a record, what the records' hashes lost by it
    (`MEMORY USAGE`, every element counted) and the `lci` hashes' bytes."""
    field_bytes = 0
    users = 0
    lci = records_before = records_after = 0
    for k in all_partitions(settings.key_prefix, settings.partitions):
        records_before += await redis.memory_usage(k.users, samples=0) or 0
        rewritten: dict[bytes, bytes] = {}
        async for uid, raw in redis.hscan_iter(k.users, count=1000):
            rec = UserRecord.unpack(raw)
            rec.active_days = 0
            rewritten[uid] = bare = rec.pack()
            field_bytes += len(raw) - len(bare)
            users += 1
        await redis.hset(k.users, mapping=rewritten)  # type: ignore[arg-type]
        records_after += await redis.memory_usage(k.users, samples=0) or 0
        lci += await redis.memory_usage(k.intervals, samples=0) or 0
        await redis.delete(k.intervals)
    return {
        "active_days_field_bytes": round(field_bytes / users, 1),
        "records_bytes_per_user": round((records_before - records_after) / users, 1),
        "lci_hash_bytes": lci,
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="lifecycle-intervals-"))
    with RedisServer(work / "redis") as server:
        settings = Settings(
            redis_url=server.url, partitions=args.partitions, clock="event", profile="daily_app"
        )
        redis = Redis.from_url(server.url)
        base = (await redis.info("memory"))["used_memory"]
        started = time.perf_counter()
        events = await fill(redis, settings, args.users)
        filled = time.perf_counter() - started
        full = (await redis.info("memory"))["used_memory"]
        api = create_api(settings, redis)
        today = settings.loaded_profile.calendar.day(NOW)
        params = {"interval": "week", "from": Calendar.iso(today - 364), "to": Calendar.iso(today)}
        timings = []
        async with httpx.AsyncClient(transport=httpx.ASGITransport(api), base_url="http://api") as client:
            for _ in range(args.requests):
                t = time.perf_counter()
                r = await client.get("/lifecycle/intervals", params=params)
                timings.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200 and len(r.json()["intervals"]) >= 52, r.text
            body = r.json()
        assert sum(row["new"] for row in body["intervals"]) == args.users
        parts = await strip(redis, settings)
        await redis.aclose()
    timings.sort()
    per_user = parts["records_bytes_per_user"]
    return {
        "users": args.users,
        "days": DAYS,
        "events": events,
        "partitions": args.partitions,
        "channels": len(CHANNELS),
        "fill_s": round(filled, 1),
        "redis_bytes_per_user": round((full - base) / args.users, 1),
        **parts,
        "lci_bytes_per_user": round(parts["lci_hash_bytes"] / args.users, 1),
        # the records grow per user; the lci hashes by intervals x channels x partitions only
        "interval_lifecycle_bytes_per_user_at_1m": round(per_user + parts["lci_hash_bytes"] / 1_000_000, 1),
        "year_by_week_ms": {
            "p50": round(statistics.median(timings), 2),
            "p99": round(timings[max(0, int(len(timings) * 0.99) - 1)], 2),
            "max": round(timings[-1], 2),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--requests", type=int, default=200)
    print(json.dumps(asyncio.run(main_async(parser.parse_args())), indent=2))


if __name__ == "__main__":
    main()
