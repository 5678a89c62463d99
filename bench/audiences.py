"""Audience cost at 1,000,000 users: export rate and memory, and counting named audiences.

Fills a fresh redis-server with N users through the worker's own code (`bench.whatif.fill`:
last activity spread over 400 days, five channels), then
- streams the whole population (an audience with no filter: every user) as NDJSON through
  the API in-process (the ASGI app driven directly, the lines counted and dropped), and
  as JSON Lines through `lifecycle audience export`'s writer to /dev/null, reporting user
  ids per second (wall and per CPU second), the CPU seconds of this process and of
  redis-server, and this process's resident memory before and at its peak during the
  export (sampled every 20 ms);
- times counting each named audience of the profile, and says whether the count came
  from range counts alone (`count_terms`) or had to walk the candidates;
- then gives every user of each index one `last_active` score (an import with one
  timestamp) and exports again: the walk must read equal scores as fast as distinct ones.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bench.whatif import fill
from service.api.app import create_api
from service.cli.audience_export import export
from service.core.audience_filters import AudienceFilter
from service.core.audiences import count_terms
from service.core.durations import DAY_MS
from service.dev.redis_server import RedisServer
from service.settings import Settings
from service.storage.audiences import AudienceReader
from service.storage.queries import Queries

_PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


async def _redis_cpu(redis: Redis) -> float:
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def _measure(redis: Redis, work: Callable[[], Awaitable[int]]) -> dict[str, Any]:
    """Rate, CPU seconds (this process and redis-server) and resident memory of `work()`.

    The machine is shared, so wall time says what an operator waits; CPU seconds say what
    the export costs whatever else runs."""
    redis_cpu = await _redis_cpu(redis)
    cpu = time.process_time()
    before = _rss()
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], _rss())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    try:
        users = await work()
    finally:
        seconds = time.perf_counter() - started
        done.set()
        sampler.join()
    cpu = time.process_time() - cpu
    redis_cpu = await _redis_cpu(redis) - redis_cpu
    return {
        "users": users,
        "seconds": round(seconds, 2),
        "user_ids_per_s": round(users / seconds),
        "cpu_s": round(cpu, 2),
        "redis_cpu_s": round(redis_cpu, 2),
        "user_ids_per_cpu_s": round(users / cpu),
        "rss_before_mb": round(before / 2**20, 1),
        "rss_peak_mb": round(max(peak[0], _rss()) / 2**20, 1),
    }


async def _ndjson_lines(app: Any, path: str, query: bytes) -> int:
    """Drive the ASGI app directly and count the lines it streams, keeping none of them
    (httpx's ASGI transport would hold the whole body in memory, and measure that)."""
    lines = 0
    status = 0
    requested = False
    hang = asyncio.get_running_loop().create_future()

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return await hang  # type: ignore[no-any-return]  # the client never disconnects

    async def send(message: dict[str, Any]) -> None:
        nonlocal lines, status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            lines += message.get("body", b"").count(b"\n")

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"api")],
        "client": ("127.0.0.1", 1),
        "server": ("api", 80),
    }
    try:
        await app(scope, receive, send)
    finally:
        hang.cancel()
    assert status == 200, status
    return lines


async def _one_score(redis: Redis, queries: Queries) -> None:
    """Every member of every `last_active` index scored alike (the records keep their times:
    the export of everyone checks them but keeps all)."""
    same = (await queries.now_ms()) // DAY_MS * DAY_MS - 5 * DAY_MS
    channels = await queries.channels_by_partition(None)
    for k, chans in zip(queries.parts, channels, strict=True):
        for ch in chans:
            key = k.active(ch)
            cursor = 0
            while True:
                cursor, members = await redis.zscan(key, cursor, count=10_000)
                if members:
                    await redis.zadd(key, {m: same for m, _ in members})
                if cursor == 0:
                    break


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="lifecycle-audiences-"))
    with RedisServer(work / "redis") as server:
        settings = Settings(
            redis_url=server.url, partitions=args.partitions, clock="event", profile="daily_app"
        )
        redis = Redis.from_url(server.url)
        started = time.perf_counter()
        await fill(redis, settings, args.users)
        filled = time.perf_counter() - started
        profile = settings.loaded_profile
        queries = Queries(redis, settings.key_prefix, settings.partitions, profile, "event")
        reader = AudienceReader(queries)
        everyone = AudienceFilter()

        async def through_api() -> int:
            return await _ndjson_lines(create_api(settings, redis), "/audiences/users", b"format=ndjson")

        async def through_writer() -> int:
            with open(os.devnull, "wb") as sink:
                return await export(reader, everyone, sink, "jsonl", lambda n: None)

        api = await _measure(redis, through_api)
        writer = await _measure(redis, through_writer)
        assert api["users"] == writer["users"] == args.users, (api, writer)

        now = await reader.q.now_ms()
        counts = {}
        for audience in profile.audiences:
            t = time.perf_counter()
            size = await reader.count(audience.filter)
            counts[audience.name] = {
                "size": size,
                "ms": round((time.perf_counter() - t) * 1000, 2),
                "from": "range counts" if count_terms(audience.filter, now, profile) is not None else "walk",
            }
        await _one_score(redis, queries)
        api_tied = await _measure(redis, through_api)
        writer_tied = await _measure(redis, through_writer)
        assert api_tied["users"] == writer_tied["users"] == args.users, (api_tied, writer_tied)
        await redis.aclose()
    return {
        "users": args.users,
        "partitions": args.partitions,
        "fill_s": round(filled, 1),
        "load_average_1m": round(os.getloadavg()[0], 1),
        "export_ndjson_api": api,
        "export_jsonl_writer": writer,
        "named_audience_counts": counts,
        "export_ndjson_api_one_score": api_tied,
        "export_jsonl_writer_one_score": writer_tied,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=8)
    result = asyncio.run(main_async(parser.parse_args()))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
