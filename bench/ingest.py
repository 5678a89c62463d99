"""Ingestion benchmark: every way in, side by side with the raw-consumer limit, in one run.

On Apache Kafka (KRaft; `--broker tansu` for the embedded one) and a fresh redis-server:
pre-load N synthetic events once as one-event messages and once as envelopes, then
measure, one process each:

- `limit`: aiokafka `getmany` + orjson decode of the one-event topic, no processing;
- `worker_envelopes` / `worker_single`: one `lifecycle worker` until every event is
  committed to Redis (timed from its first commit to its last), with CPU s per million
  events and peak RSS;
- `bridge`: `lifecycle bridge` logic re-publishing the one-event topic as envelopes;
- `collector`: `POST /v1/events` with 100-event batches from 8 concurrent clients to a
  running `lifecycle api`, each answered after the broker's ack.

The machine is shared and noisy: compare the ratios within one run, not absolute figures
across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis
from aiokafka import AIOKafkaConsumer

from service.bridge import Bridge
from service.core.profile import load_profile
from service.embedded import KafkaBroker, RedisServer, TansuBroker, free_port
from service.generator import generate
from service.keys import all_partitions
from service.publisher import EventPublisher
from service.settings import Settings
from service.topics import create_topics

CLK_TCK = os.sysconf("SC_CLK_TCK")
START_MS = 1_700_000_000_000


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _applied(client: redis.Redis, prefix: str, partitions: int) -> int:
    pipe = client.pipeline(transaction=False)
    for k in all_partitions(prefix, partitions):
        pipe.hmget(k.counters, ["applied", "unknown_user_events", "duplicates"])
    return sum(int(v) for reply in pipe.execute() for v in reply if v is not None)


def _env(
    bootstrap: str, redis_url: str, topic: str, partitions: int, prefix: str, **extra: str
) -> dict[str, str]:
    return {
        **os.environ,
        "LIFECYCLE_KAFKA_BOOTSTRAP": bootstrap,
        "LIFECYCLE_REDIS_URL": redis_url,
        "LIFECYCLE_EVENTS_TOPIC": topic,
        "LIFECYCLE_DLQ_TOPIC": f"{topic}.dlq",
        "LIFECYCLE_PARTITIONS": str(partitions),
        "LIFECYCLE_PROFILE": "fintech",
        "LIFECYCLE_CLOCK": "event",
        "LIFECYCLE_KEY_PREFIX": prefix,
        "LIFECYCLE_APP_ID": f"bench-{prefix}",
        "LIFECYCLE_WORKER_PORT": "0",
        "LIFECYCLE_LOG_LEVEL": "WARNING",
        **extra,
    }


def measure_limit(bootstrap: str, topic: str, total: int) -> float:
    """Events/s of a bare aiokafka consumer that only decodes (the ceiling for Python)."""

    async def run() -> float:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
            fetch_max_bytes=64 << 20,
            max_partition_fetch_bytes=16 << 20,
        )
        await consumer.start()
        seen = 0
        started = None
        try:
            while seen < total:
                batch = await consumer.getmany(timeout_ms=500, max_records=20_000)
                if started is None and batch:
                    started = time.perf_counter()
                for msgs in batch.values():
                    for m in msgs:
                        orjson.loads(m.value)
                        seen += 1
        finally:
            await consumer.stop()
        assert started is not None
        return seen / (time.perf_counter() - started)

    return asyncio.run(run())


def measure_worker(
    env: dict[str, str], redis_url: str, prefix: str, partitions: int, total: int, log: Path
) -> dict[str, Any]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "worker"], env=env, stdout=out, stderr=out
        )
    client = redis.Redis.from_url(redis_url)
    try:
        first: tuple[float, int, float] | None = None
        deadline = time.monotonic() + 900
        done = 0
        while done < total:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"worker stopped or timed out at {done}/{total}; see {log}")
            done = _applied(client, prefix, partitions)
            if first is None and done > 0:
                first = (time.perf_counter(), done, _cpu_seconds(proc.pid))
            time.sleep(0.02)
        assert first is not None
        elapsed = time.perf_counter() - first[0]
        measured = total - first[1]
        return {
            "events_per_s": round(measured / elapsed),
            "cpu_s_per_million": round((_cpu_seconds(proc.pid) - first[2]) / measured * 1e6, 2),
            "peak_rss_mb": round(_peak_rss_mb(proc.pid), 1),
        }
    finally:
        proc.terminate()
        proc.wait(30)
        client.close()


def measure_bridge(settings: Settings, source: str, total: int) -> float:
    async def run() -> float:
        bridge = Bridge(settings, source, group_id=f"bench-bridge-{settings.app_id}")
        task = asyncio.create_task(bridge.run())
        while bridge.stats.events == 0:
            await asyncio.sleep(0.005)
        started, first = time.perf_counter(), bridge.stats.events
        while bridge.stats.events < total:
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - started
        bridge.stop()
        await task
        return (total - first) / elapsed

    return asyncio.run(run())


def measure_collector(
    api_url: str, events: list[dict[str, Any]], batch: int = 100, clients: int = 8
) -> float:
    bodies = [orjson.dumps(events[i : i + batch]) for i in range(0, len(events), batch)]

    async def run() -> float:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        for body in bodies:
            queue.put_nowait(body)

        async def client() -> None:
            async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
                while not queue.empty():
                    body = queue.get_nowait()
                    r = await http.post(
                        "/v1/events", content=body, headers={"content-type": "application/json"}
                    )
                    r.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return len(events) / (time.perf_counter() - started)

    return asyncio.run(run())


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="lifecycle-bench-"))
    broker_cls = KafkaBroker if args.broker == "kafka" else TansuBroker
    n_parts = args.partitions
    with RedisServer(work / "redis") as rds, broker_cls(work / "broker") as broker:
        bs = broker.bootstrap
        events = list(
            islice(
                generate(
                    users=args.users, start_ms=START_MS, days=90, seed=3, profile=load_profile("fintech")
                ),
                args.events,
            )
        )
        total = len(events)
        topics = {name: n_parts for name in ("single", "env", "bridged", "collected")}
        create_topics(bs, {**topics, **{f"{t}.dlq": n_parts for t in topics}})
        for topic, single in (("single", True), ("env", False)):
            pub = EventPublisher(bs, topic, n_parts, envelope_size=200, single=single)
            pub.publish(events)
            pub.flush()
            pub.close()
        print(f"pre-loaded {total} events twice ({args.users} users, {n_parts} partitions)", file=sys.stderr)
        rates: dict[str, Any] = {}
        details: dict[str, Any] = {}
        rates["limit"] = round(measure_limit(bs, "single", total))
        print(f"limit: {rates['limit']:,} ev/s", file=sys.stderr)
        for name, topic in (("worker_envelopes", "env"), ("worker_single", "single")):
            env = _env(bs, rds.url, topic, n_parts, name)
            details[name] = measure_worker(env, rds.url, name, n_parts, total, work / f"{name}.log")
            rates[name] = details[name]["events_per_s"]
            print(f"{name}: {details[name]}", file=sys.stderr)
        settings = Settings(kafka_bootstrap=bs, redis_url=rds.url, events_topic="bridged", partitions=n_parts)
        rates["bridge"] = round(measure_bridge(settings, "single", total))
        print(f"bridge: {rates['bridge']:,} ev/s", file=sys.stderr)
        port = free_port()
        api_env = _env(bs, rds.url, "collected", n_parts, "collector", LIFECYCLE_API_PORT=str(port))
        with open(work / "api.log", "wb") as out:
            api = subprocess.Popen(
                [sys.executable, "-m", "service.cli", "api"], env=api_env, stdout=out, stderr=out
            )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/healthz").raise_for_status()
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            rates["collector_batches_of_100"] = round(measure_collector(f"http://127.0.0.1:{port}", events))
        finally:
            api.terminate()
            api.wait(30)
        print(f"collector: {rates['collector_batches_of_100']:,} ev/s", file=sys.stderr)
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "broker": args.broker,
        "events": total,
        "users": args.users,
        "partitions": n_parts,
        "rates": rates,
        "ratios_to_limit": {k: round(v / rates["limit"], 3) for k, v in rates.items() if k != "limit"},
        "workers": details,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=30_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--broker", choices=("kafka", "tansu"), default="kafka")
    parser.add_argument("--json", help="also write the result to this file")
    args = parser.parse_args()
    result = run(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
