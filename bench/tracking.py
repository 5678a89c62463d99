"""Tracking API benchmark: the collector's rate through `/v1/batch` beside `/v1/events`.

One `lifecycle api` on a fresh broker (Tansu by default, `--broker kafka` for Apache
Kafka) and redis-server; the same synthetic events are posted three ways, each answered
after the broker's `acks=all`:

- `events`: canonical events to `POST /v1/events`, 100 per request, 8 concurrent clients;
- `batch`: the same events as Segment `track` messages to `POST /v1/batch`, 100 per
  request (the SDK's batch size), 8 concurrent clients;
- `sdk`: Segment's own Python SDK (`segment-analytics-python`, 8 upload threads) posting
  them, from the first call to the end of `flush()`.

The machine is shared and noisy: compare the rates within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

import httpx
import orjson
from segment.analytics.client import Client

from bench.ingest import START_MS
from bench.worker_phase import worker_env
from service.core.profile import load_profile
from service.dev.generator import generate
from service.dev.kafka_broker import KafkaBroker, TansuBroker
from service.dev.processes import free_port
from service.dev.redis_server import RedisServer
from service.kafka.topics import create_topics

WRITE_KEY = "bench-write-key"


def _segment(event: dict[str, Any]) -> dict[str, Any]:
    props = dict(event.get("properties") or {})
    if event.get("amount") is not None:
        props["revenue"] = event["amount"]
    if event.get("channel"):
        props["channel"] = event["channel"]
    return {
        "type": "track",
        "messageId": event["event_id"],
        "userId": event["user_id"],
        "event": event["type"],
        "timestamp": datetime.fromtimestamp(event["ts"] / 1000, UTC).isoformat(),
        "properties": props,
    }


def _post_all(url: str, path: str, bodies: list[bytes], headers: dict[str, str], clients: int = 8) -> float:
    async def run() -> float:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        for body in bodies:
            queue.put_nowait(body)

        async def client() -> None:
            async with httpx.AsyncClient(base_url=url, timeout=30, headers=headers) as http:
                while not queue.empty():
                    r = await http.post(path, content=queue.get_nowait())
                    r.raise_for_status()
                    assert not r.json()["rejected"], r.text

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return time.perf_counter() - started

    return asyncio.run(run())


def measure_sdk(url: str, messages: list[dict[str, Any]]) -> float:
    errors: list[Any] = []
    sdk = Client(
        WRITE_KEY,
        host=url,
        thread=8,
        max_queue_size=len(messages) + 1,
        on_error=lambda e, b: errors.append(e),
    )
    started = time.perf_counter()
    for m in messages:
        sdk.track(
            m["userId"],
            m["event"],
            m["properties"],
            timestamp=datetime.fromisoformat(m["timestamp"]),
            message_id=m["messageId"],
        )
    sdk.flush()
    elapsed = time.perf_counter() - started
    sdk.join()
    if errors:
        raise SystemExit(f"the SDK reported errors: {errors[:3]}")
    return len(messages) / elapsed


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="lifecycle-bench-tracking-"))
    broker_cls = KafkaBroker if args.broker == "kafka" else TansuBroker
    events = list(
        islice(
            generate(users=args.users, start_ms=START_MS, days=90, seed=5, profile=load_profile("fintech")),
            args.events,
        )
    )
    messages = [_segment(e) for e in events]
    with RedisServer(work / "redis") as rds, broker_cls(work / "broker") as broker:
        create_topics(broker.bootstrap, {"tracked": 8, "tracked.dlq": 8})
        port = free_port()
        env = worker_env(
            broker.bootstrap,
            rds.url,
            "tracked",
            8,
            "tracking",
            LIFECYCLE_API_PORT=str(port),
            LIFECYCLE_WRITE_KEYS=json.dumps([WRITE_KEY]),
            LIFECYCLE_MIN_EVENT_TIME="2023-01-01T00:00:00Z",
        )
        with open(work / "api.log", "wb") as out:
            api = subprocess.Popen(
                [sys.executable, "-m", "service.cli", "api"], env=env, stdout=out, stderr=out
            )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            auth = {"authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}
            json_type = {"content-type": "application/json"}
            events_bodies = [orjson.dumps(events[i : i + 100]) for i in range(0, len(events), 100)]
            batch_bodies = [
                orjson.dumps({"batch": messages[i : i + 100], "sentAt": datetime.now(UTC).isoformat()})
                for i in range(0, len(messages), 100)
            ]
            _post_all(url, "/v1/events", events_bodies[:5], json_type)  # warm the producer up
            rates = {
                "events": round(len(events) / _post_all(url, "/v1/events", events_bodies, json_type)),
                "batch": round(
                    len(events) / _post_all(url, "/v1/batch", batch_bodies, {**json_type, **auth})
                ),
                "sdk": round(measure_sdk(url, messages)),
            }
        finally:
            api.terminate()
            api.wait(30)
    return {"events": len(events), "users": args.users, "broker": args.broker, "rates_ev_per_s": rates}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--broker", choices=("tansu", "kafka"), default="tansu")
    print(json.dumps(run(parser.parse_args()), indent=2))


if __name__ == "__main__":
    main()
