"""Worker throughput on the synthetic stream: events/s until every event is committed.

Pre-loads N generated events (envelopes by default, `--single` for one event per
message) into a fresh topic on Apache Kafka (or Tansu with `--broker tansu`), starts one
`lifecycle worker` process against a fresh redis-server, and times the worker from its
first commit to its last by polling the committed `applied` counters. Reports events/s,
CPU seconds per million events and peak RSS of the worker.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path
from typing import Any

import redis

from service.core.profile import load_profile
from service.embedded import KafkaBroker, RedisServer, TansuBroker
from service.generator import generate
from service.keys import all_partitions
from service.publisher import EventPublisher
from service.topics import create_topics

CLK_TCK = os.sysconf("SC_CLK_TCK")


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


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="lifecycle-bench-"))
    broker_cls = KafkaBroker if args.broker == "kafka" else TansuBroker
    with RedisServer(work / "redis") as rds, broker_cls(work / "broker") as broker:
        topic = "bench-events"
        create_topics(broker.bootstrap, {topic: args.partitions, f"{topic}.dlq": args.partitions})
        profile = load_profile(args.profile)
        t = time.perf_counter()
        events = generate(users=args.users, start_ms=1_700_000_000_000, days=90, seed=3, profile=profile)
        pub = EventPublisher(broker.bootstrap, topic, args.partitions, envelope_size=200, single=args.single)
        total = pub.publish(islice(events, args.events))
        pub.flush()
        pub.close()
        print(f"pre-loaded {total} events in {time.perf_counter() - t:.1f}s", file=sys.stderr)
        env = {
            **os.environ,
            "LIFECYCLE_KAFKA_BOOTSTRAP": broker.bootstrap,
            "LIFECYCLE_REDIS_URL": rds.url,
            "LIFECYCLE_EVENTS_TOPIC": topic,
            "LIFECYCLE_DLQ_TOPIC": f"{topic}.dlq",
            "LIFECYCLE_PARTITIONS": str(args.partitions),
            "LIFECYCLE_PROFILE": args.profile,
            "LIFECYCLE_CLOCK": "event",
            "LIFECYCLE_WORKER_PORT": "0",
            "LIFECYCLE_LOG_LEVEL": "WARNING",
        }
        log = open(work / "worker.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "worker"], env=env, stdout=log, stderr=log
        )
        client = redis.Redis.from_url(rds.url)
        try:
            first: tuple[float, int, float] | None = None
            deadline = time.monotonic() + args.timeout
            done = 0
            while time.monotonic() < deadline:
                done = _applied(client, "lc", args.partitions)
                now = time.perf_counter()
                if first is None and done > 0:
                    first = (now, done, _cpu_seconds(proc.pid))
                if done >= total:
                    break
                if proc.poll() is not None:
                    raise SystemExit(f"worker exited; see {work / 'worker.log'}")
                time.sleep(0.02)
            else:
                raise SystemExit(f"timed out with {done}/{total} events applied")
            assert first is not None
            end = time.perf_counter()
            cpu = _cpu_seconds(proc.pid) - first[2]
            measured = total - first[1]
            result = {
                "broker": args.broker,
                "message_form": "single" if args.single else "envelopes(200)",
                "events": total,
                "users": args.users,
                "partitions": args.partitions,
                "events_per_s": round(measured / (end - first[0])),
                "cpu_s_per_million": round(cpu / measured * 1e6, 2) if measured else None,
                "peak_rss_mb": round(_peak_rss_mb(proc.pid), 1),
            }
        finally:
            proc.terminate()
            proc.wait(20)
            client.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--users", type=int, default=30_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--profile", default="fintech")
    parser.add_argument("--broker", choices=("kafka", "tansu"), default="kafka")
    parser.add_argument("--single", action="store_true", help="one event per message")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--json", help="also write the result to this file")
    args = parser.parse_args()
    result = run(args)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
