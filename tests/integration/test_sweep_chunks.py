"""A sweep with many users due commits in bounded chunks, and counts exactly as one step.

After a long outage, or when an import gave many users one timestamp, a sweep can find a
great many users whose state changed. Read and committed in one step, its script call
grows with them until it outlasts the Redis timeout on every tick and the sweep never
advances. Chunks of `LIFECYCLE_SWEEP_CHUNK` users each commit what they counted, with
every swept user's record marked as accounted to the sweep's clock, so a chunk that ran
is never counted again (after a crash neither) and the counters equal one big step's.
"""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from service.core.batch import apply_events
from service.core.durations import DAY_MS
from service.core.events import Event
from service.settings import Settings
from service.storage.store import RedisStore
from service.worker.processor import PartitionProcessor
from tests.integration.test_whatif_property import _NoSink

pytestmark = pytest.mark.integration

NOW = 1_790_000_000_000
USERS = 3000


async def _sweep_all(redis_url: str, prefix: str, chunk: int) -> tuple[dict[bytes, bytes], int]:
    s = Settings(
        redis_url=redis_url,
        partitions=1,
        clock="event",
        profile="daily_app",
        key_prefix=prefix,
        sweep_chunk=chunk,
    )
    redis = Redis.from_url(redis_url)
    try:
        store = RedisStore(redis, s.key_prefix, s.dedup_window_s)
        swept = NOW - 400 * DAY_MS
        events = [
            Event(f"e{i}", f"u{i}", "visit", NOW - (100 + i % 200) * DAY_MS, ("ads", "organic")[i % 2])
            for i in range(USERS)
        ]
        await store.claim(0)
        snap = await store.load(0, [], {})
        result = apply_events(
            {}, sorted(events, key=lambda e: e.ts), swept, s.loaded_profile, s.first_index_window_ms
        )
        await store.commit_batch(0, snap.meta, result, offset=0, new_digests={}, swept=swept)
        await redis.hset(store.keys(0).meta, mapping={"swept": swept, "wm": NOW})
        before = int((await redis.info("commandstats")).get("cmdstat_evalsha", {}).get("calls", 0))
        await PartitionProcessor(store, _NoSink(), s, s.loaded_profile).sweep(0)
        calls = int((await redis.info("commandstats")).get("cmdstat_evalsha", {}).get("calls", 0)) - before
        meta = await redis.hgetall(store.keys(0).meta)
        assert int(meta[b"swept"]) == NOW
        return await redis.hgetall(store.keys(0).counters), calls
    finally:
        await redis.aclose()


async def test_a_big_sweep_commits_in_chunks_and_counts_as_one_step(redis_url: str) -> None:
    whole, one_call = await _sweep_all(redis_url, "whole", chunk=100_000)
    chunked, calls = await _sweep_all(redis_url, "chunked", chunk=200)
    assert one_call == 1
    assert calls >= USERS // 200
    assert chunked == whole
