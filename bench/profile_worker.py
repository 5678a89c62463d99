"""Where a worker's time goes: py-spy samples one `lifecycle worker` through a pre-loaded topic.

    python -m bench.profile_worker [--single | --backfill] [--events N]

Pre-loads N synthetic events (envelopes, or one per message with `--single`; with
`--backfill`, the order history of `bench.order_history` instead of sessions) on a fresh
Apache Kafka and redis-server, runs one worker under `py-spy record` (install py-spy
first: `pip install py-spy`) until every event is committed, and prints the functions
with the most samples — own time and total time — from the collapsed stacks.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

import redis

from bench.ingest import START_MS
from bench.order_history import order_history
from bench.worker_phase import applied, worker_env
from service.core.profile import load_profile
from service.dev.generator import generate
from service.dev.kafka_broker import KafkaBroker
from service.dev.redis_server import RedisServer
from service.kafka.publisher import EventPublisher
from service.kafka.topics import create_topics


def _label(frame: str) -> str:
    """`apply_events (/x/service/core/batch.py:151)` -> `apply_events (batch.py)`."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rstrip(')').rsplit(':', 1)[0].rsplit('/', 1)[-1]})"


def summarise(collapsed: Path, top: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        samples += n
        frames = [_label(f) for f in stack.split(";")]
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    rows = [f"{samples} samples", "own time:"]
    rows += [f"  {n / samples:6.1%}  {f}" for f, n in own.most_common(top)]
    rows += ["total time (self and callees):"]
    rows += [f"  {n / samples:6.1%}  {f}" for f, n in total.most_common(top) if n / samples < 0.999]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--users", type=int, default=30_000)
    parser.add_argument("--single", action="store_true")
    parser.add_argument(
        "--backfill", action="store_true", help="an order history: one event per user per batch"
    )
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    work = Path(tempfile.mkdtemp(prefix="lifecycle-profile-"))
    with RedisServer(work / "redis") as rds, KafkaBroker(work / "kafka") as broker:
        if args.backfill:
            events = list(order_history(events=args.events, start_ms=START_MS, seed=5))
        else:
            events = list(
                islice(
                    generate(
                        users=args.users, start_ms=START_MS, days=90, seed=3, profile=load_profile("fintech")
                    ),
                    args.events,
                )
            )
        create_topics(broker.bootstrap, {"t": 8, "t.dlq": 8})
        pub = EventPublisher(broker.bootstrap, "t", 8, envelope_size=200, single=args.single)
        pub.publish(events)
        pub.flush()
        pub.close()
        env = worker_env(broker.bootstrap, rds.url, "t", 8, "prof")
        out = work / "profile.txt"
        with open(work / "worker.log", "wb") as log:
            proc = subprocess.Popen(
                [spy, "record", "--format", "raw", "--rate", "250", "-o", str(out), "--",
                 sys.executable, "-m", "service.cli", "worker"],
                env={**os.environ, **env}, stdout=log, stderr=log, start_new_session=True,
            )  # fmt: skip
        client = redis.Redis.from_url(rds.url)
        while applied(client, "prof", 8) < len(events):
            if proc.poll() is not None:
                raise SystemExit(f"the worker stopped; see {work / 'worker.log'}")
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)  # the worker stops; py-spy writes what it sampled
        proc.wait(60)
        client.close()
    print(summarise(out, args.top))


if __name__ == "__main__":
    main()
