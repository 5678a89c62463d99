"""How fast `lifecycle replay` publishes a JSON Lines file, on a fresh Apache Kafka.

    python -m bench.replay [--events N] [--broker kafka|tansu]

Writes N synthetic events (`service.dev.generator`, the fintech profile) to a JSON Lines
file, runs `lifecycle replay` on it as a user would (read, validate, envelopes, every
message acknowledged) and prints the rate the command reports and the wall-clock rate,
process start included.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

import orjson

from service.core.profile import load_profile
from service.dev.generator import generate
from service.dev.kafka_broker import KafkaBroker, TansuBroker

START_MS = 1_700_000_000_000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=150_000)
    parser.add_argument("--broker", choices=("kafka", "tansu"), default="kafka")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lifecycle-replay-"))
    path = work / "events.jsonl"
    events = generate(users=args.users, start_ms=START_MS, days=90, seed=3, profile=load_profile("fintech"))
    with open(path, "wb") as f:
        for event in islice(events, args.events):
            f.write(orjson.dumps(event) + b"\n")
    broker_cls = KafkaBroker if args.broker == "kafka" else TansuBroker
    with broker_cls(work / "broker") as broker:
        env = {
            **os.environ,
            "LIFECYCLE_KAFKA_BOOTSTRAP": broker.bootstrap,
            "LIFECYCLE_PARTITIONS": "12",
            "LIFECYCLE_EVENTS_TOPIC": "replayed",
        }
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "service.cli", "replay", str(path)],
            env=env,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - started
    reported = re.search(r"\(([\d,]+) ev/s", result.stdout)
    if result.returncode != 0 or reported is None:
        raise SystemExit(f"lifecycle replay failed ({result.returncode}): {result.stdout}{result.stderr}")
    print(
        f"lifecycle replay of {args.events:,} events ({args.broker}): {reported.group(1)} ev/s "
        f"as it reports, {args.events / wall:,.0f} ev/s wall clock with process start"
    )


if __name__ == "__main__":
    main()
