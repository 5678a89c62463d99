"""Webhook relay throughput, end to end: `lifecycle webhooks` (its own process) reads trigger
CloudEvents from a real broker and POSTs them to a receiver on loopback that verifies every
signature with the `standardwebhooks` package (its cost is included: it shares the machine).

    .venv/bin/python -m bench.webhook_relay [--events 20000] [--users 2000] [--concurrency 32]
                                            [--broker kafka|tansu]

Prints deliveries per second from the first to the last delivery (steady state) and over
the whole run including the relay's start and group join.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
from aiohttp import web
from kafka import KafkaProducer
from standardwebhooks.webhooks import Webhook

from bench.receiver import start_receiver
from service.core.partitioning import partition_for
from service.dev.kafka_broker import KafkaBroker, TansuBroker
from service.dev.processes import free_port
from service.kafka.topics import create_topics

SECRET = "whsec_" + base64.b64encode(b"bench-relay-secret-32-bytes-long").decode()
PARTITIONS = 4


def publish(bootstrap: str, topic: str, events: int, users: int) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks="all")
    for n in range(events):
        user = f"u{n % users}"
        ce = {
            "specversion": "1.0",
            "id": f"t{n:08d}",
            "source": "bench",
            "type": "lifecycle.trigger.recall",
            "subject": user,
            "time": "2026-12-05T12:00:00Z",
            "data": {"kind": "recall", "tier": "push_nudge", "holdout": False},
        }
        producer.send(topic, orjson.dumps(ce), key=user.encode(), partition=partition_for(user, PARTITIONS))
    producer.flush()
    producer.close()


async def run(args: argparse.Namespace, bootstrap: str, work: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    topic = f"bench-triggers-{suffix}"
    create_topics(bootstrap, {topic: PARTITIONS, f"{topic}.dlq": PARTITIONS})
    publish(bootstrap, topic, args.events, args.users)

    verifier = Webhook(SECRET)
    seen: set[str] = set()
    times: list[float] = []
    done = asyncio.Event()

    async def receive(request: web.Request) -> web.Response:
        event = verifier.verify(await request.read(), dict(request.headers))
        if event["id"] not in seen:
            seen.add(event["id"])
            times.append(time.perf_counter())
            if len(seen) == args.events:
                done.set()
        return web.Response(status=204)

    runner, url = await start_receiver(receive)
    env = {
        **os.environ,
        "LIFECYCLE_KAFKA_BOOTSTRAP": bootstrap,
        "LIFECYCLE_TRIGGERS_TOPIC": topic,
        "LIFECYCLE_WEBHOOK_DLQ_TOPIC": f"{topic}.dlq",
        "LIFECYCLE_PARTITIONS": str(PARTITIONS),
        "LIFECYCLE_APP_ID": f"bench-{suffix}",
        "LIFECYCLE_WEBHOOK_URL": url,
        "LIFECYCLE_WEBHOOK_SECRET": SECRET,
        "LIFECYCLE_WEBHOOK_CONCURRENCY": str(args.concurrency),
        "LIFECYCLE_WEBHOOK_METRICS_PORT": str(free_port()),
    }
    started = time.perf_counter()
    log = open(work / "webhooks.log", "wb")  # noqa: SIM115 - the child's lifetime
    relay = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.cli", "webhooks", env=env, stdout=log, stderr=log
    )
    try:
        await asyncio.wait_for(done.wait(), timeout=args.timeout)
    finally:
        relay.terminate()
        await relay.wait()
        await runner.cleanup()
    steady = times[-1] - times[0]
    print(
        f"{args.events:,} triggers, {args.users:,} users, {PARTITIONS} partitions, concurrency "
        f"{args.concurrency}: {args.events / steady:,.0f} deliveries/s first to last "
        f"({steady:.1f} s); {args.events / (times[-1] - started):,.0f}/s including start-up "
        f"({times[-1] - started:.1f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--broker", choices=("kafka", "tansu"), default="kafka")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-relay-") as tmp:
        work = Path(tmp)
        broker_cls = KafkaBroker if args.broker == "kafka" else TansuBroker
        with broker_cls(work / "broker") as broker:
            asyncio.run(run(args, broker.bootstrap, work))


if __name__ == "__main__":
    main()
