"""The worker's batch step alone: `PartitionProcessor.process` against a real redis-server.

    python -m bench.batch_step [--events N] [--envelope K] [--rounds R]

No broker: envelopes are built as the publisher builds them and handed to the processor
per partition, `batch_messages` at a time, as the Faust agent hands them. It measures the
Python side of the hot path (decode, sort, apply, commit) plus the two Redis round trips
per batch, and prints events per second of the best of `--rounds` fresh runs (the
machine's other load only ever slows a run down).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Sequence
from itertools import islice
from pathlib import Path

import orjson
from redis.asyncio import Redis

from service.core.envelopes import envelopes
from service.core.profile import load_profile
from service.dev.generator import generate
from service.dev.redis_server import RedisServer
from service.settings import Settings
from service.storage.store import RedisStore
from service.worker.outgoing import Outgoing
from service.worker.processor import PartitionProcessor

START_MS = 1_700_000_000_000


class _NoSink:
    """Generated events are valid and envelopes only hold their partition's users: nothing to send."""

    async def send_and_wait(self, messages: Sequence[Outgoing]) -> list[tuple[Outgoing, BaseException]]:
        raise AssertionError(f"unexpected dead letter or re-route: {messages[0].headers}")

    async def last_header(self, topic: str, partition: int, header: str) -> list[bytes]:
        raise AssertionError("no relay here")


async def _run(url: str, prefix: str, batches: dict[int, list[list[tuple[int, bytes, bytes]]]]) -> float:
    settings = Settings(redis_url=url, partitions=8, clock="event", profile="fintech", key_prefix=prefix)
    redis = Redis.from_url(url)
    store = RedisStore(redis, settings.key_prefix, settings.dedup_window_s)
    processor = PartitionProcessor(store, _NoSink(), settings, settings.loaded_profile)
    started = time.perf_counter()
    for partition, chunks in batches.items():
        for chunk in chunks:
            await processor.process(partition, chunk)
    elapsed = time.perf_counter() - started
    await redis.aclose()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--envelope", type=int, default=200)
    parser.add_argument("--batch", type=int, default=1000, help="messages per batch")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    events = list(
        islice(
            generate(users=args.users, start_ms=START_MS, days=90, seed=3, profile=load_profile("fintech")),
            args.events,
        )
    )
    items = ((e["user_id"], orjson.dumps(e)) for e in events)
    per_partition: dict[int, list[tuple[int, bytes, bytes]]] = {}
    for partition, key, value in envelopes(items, 8, args.envelope):
        msgs = per_partition.setdefault(partition, [])
        msgs.append((len(msgs), key, value))
    batches = {
        p: [msgs[i : i + args.batch] for i in range(0, len(msgs), args.batch)]
        for p, msgs in per_partition.items()
    }
    times = []
    with RedisServer(Path(tempfile.mkdtemp(prefix="lifecycle-step-")) / "redis") as server:
        for r in range(args.rounds):
            times.append(asyncio.run(_run(server.url, f"step{r}", batches)))
    best = min(times)
    print(
        f"{len(events)} events in {sum(len(c) for c in batches.values())} batches: "
        f"best {best:.3f}s ({len(events) / best:,.0f} events/s), all {[round(t, 3) for t in times]}"
    )


if __name__ == "__main__":
    main()
