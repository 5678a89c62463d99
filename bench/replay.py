"""How fast `lifecycle replay` publishes a JSON Lines file, on a fresh Apache Kafka.

    python -m bench.replay [--events N] [--broker kafka|tansu]

Runs `lifecycle replay` on N synthetic events (`service.dev.generator`, the fintech
profile) written as JSON Lines, as a user would (read, validate, envelopes, every message
acknowledged): `bench.ingest.measure_replay`, the benchmark's own phase. Prints the rate
the command reports.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from itertools import islice
from pathlib import Path

from bench.ingest import START_MS, measure_replay
from service.core.profile import load_profile
from service.dev.generator import generate
from service.dev.kafka_broker import KafkaBroker, TansuBroker


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=150_000)
    parser.add_argument("--broker", choices=("kafka", "tansu"), default="kafka")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lifecycle-replay-"))
    generated = generate(
        users=args.users, start_ms=START_MS, days=90, seed=3, profile=load_profile("fintech")
    )
    events = list(islice(generated, args.events))
    broker_cls = KafkaBroker if args.broker == "kafka" else TansuBroker
    with broker_cls(work / "broker") as broker:
        env = {
            **os.environ,
            "LIFECYCLE_KAFKA_BOOTSTRAP": broker.bootstrap,
            "LIFECYCLE_PARTITIONS": "12",
            "LIFECYCLE_EVENTS_TOPIC": "replayed",
        }
        reported = measure_replay(env, events, work)
    print(f"lifecycle replay of {len(events):,} events ({args.broker}): {reported:,.0f} ev/s as it reports")


if __name__ == "__main__":
    main()
