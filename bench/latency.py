"""Latency at a fixed offered load: event produce time to committed, and to visible in the API.

A producer thread sends the offered rate in 50 ms ticks (envelopes, acknowledged), with
one probe event of a brand-new user per tick; the main loop watches for each probe's
user in Redis (committed) and then through `GET /users/{id}` of a running API
(visible). Both are timed from just before the probe's tick was handed to the producer.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis

from service.core.partitioning import partition_for
from service.kafka.publisher import EventPublisher
from service.storage.keys import PartitionKeys

TICK_S = 0.05


def _percentiles(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    return {
        "p50": round(statistics.median(values), 1),
        "p99": round(values[max(0, int(len(values) * 0.99) - 1)], 1),
        "max": round(values[-1], 1),
        "samples": len(values),
    }


def measure_latency(
    env: dict[str, str],
    bootstrap: str,
    topic: str,
    partitions: int,
    redis_url: str,
    prefix: str,
    api_port: int,
    events: list[dict[str, Any]],
    rate: float,
    seconds: float,
    log: Path,
) -> dict[str, Any]:
    procs = []
    for command in ("worker", "api"):
        with open(log.with_suffix(f".{command}.log"), "wb") as out:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "service.cli", command], env=env, stdout=out, stderr=out
                )
            )
    try:
        return asyncio.run(
            _run(bootstrap, topic, partitions, redis_url, prefix, api_port, events, rate, seconds, procs)
        )
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)


async def _run(
    bootstrap: str,
    topic: str,
    partitions: int,
    redis_url: str,
    prefix: str,
    api_port: int,
    events: list[dict[str, Any]],
    rate: float,
    seconds: float,
    procs: list[subprocess.Popen[bytes]],
) -> dict[str, Any]:
    redis = Redis.from_url(redis_url)
    sent_at: dict[str, float] = {}
    stop = threading.Event()
    per_tick = max(1, int(rate * TICK_S))

    def produce(warmup: bool) -> None:
        publisher = EventPublisher(bootstrap, topic, partitions, envelope_size=200)
        n, tick = 0, 0
        next_tick = time.perf_counter()
        try:
            while not stop.is_set():
                now_ms = int(time.time() * 1000)
                batch = []
                for _ in range(per_tick):
                    e = events[n % len(events)]
                    batch.append({**e, "event_id": f"lat-{os.getpid()}-{n}", "ts": now_ms})
                    n += 1
                probe = f"probe-{'w' if warmup else 'm'}-{tick}"
                batch.append({"event_id": probe, "user_id": probe, "type": "visit", "ts": now_ms})
                sent_at[probe] = time.perf_counter()
                publisher.publish(batch)
                publisher.flush()
                tick += 1
                next_tick += TICK_S
                delay = next_tick - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
        finally:
            publisher.close()

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}", timeout=5) as api:
        deadline = time.monotonic() + 60
        while True:  # the API answers and the worker commits
            if any(p.poll() is not None for p in procs):
                raise SystemExit("the worker or the API exited during the latency run")
            try:
                if (await api.get("/healthz")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the API did not start")
            await asyncio.sleep(0.2)
        committed: dict[str, float] = {}
        visible: dict[str, float] = {}
        for warmup, duration in ((True, 5.0), (False, seconds)):
            stop.clear()
            thread = threading.Thread(target=produce, args=(warmup,), daemon=True)
            thread.start()
            end = time.perf_counter() + duration
            while time.perf_counter() < end or any(p not in visible for p in list(sent_at)):
                if time.perf_counter() > end:
                    stop.set()
                if time.perf_counter() > end + 60:
                    raise SystemExit("probes not visible within 60 s of the end of the run")
                pending = [p for p in list(sent_at) if p not in committed]
                if pending:
                    pipe = redis.pipeline(transaction=False)
                    for probe in pending:
                        pipe.hexists(PartitionKeys(prefix, partition_for(probe, partitions)).users, probe)
                    for probe, hit in zip(pending, await pipe.execute(), strict=True):
                        if hit:
                            committed[probe] = time.perf_counter()
                unseen = [p for p in committed if p not in visible]
                replies = await asyncio.gather(*(api.get(f"/users/{p}") for p in unseen))
                for probe, reply in zip(unseen, replies, strict=True):
                    if reply.status_code == 200:
                        visible[probe] = time.perf_counter()
                await asyncio.sleep(0.002)
            stop.set()
            thread.join()
            if warmup:
                sent_at.clear()
                committed.clear()
                visible.clear()
    await redis.aclose()
    return {
        "offered_events_per_s": round(per_tick / TICK_S),
        "committed_ms": _percentiles([(committed[p] - sent_at[p]) * 1000 for p in committed]),
        "visible_ms": _percentiles([(visible[p] - sent_at[p]) * 1000 for p in visible]),
    }
