"""Sweeps: how one worker's rate and CPU (its own and Redis's) move with the number of
distinct users, and with the envelope size, everything else held.

Each point pre-loads a topic of its own and runs one worker on it with a key prefix and
app id of its own (`measure_worker`, as the ingestion phases do), so no point sees another's
state; a point past `BENCH_PHASE_TIMEOUT` is recorded with the rate it reached and the
sweep goes on.
"""

from __future__ import annotations

import heapq
import math
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from tqdm import tqdm

from bench.phases import Phases
from bench.worker_phase import measure_worker, worker_env
from service.core.profile import load_profile
from service.dev.generator import generate
from service.kafka.publisher import EventPublisher
from service.kafka.topics import create_topics
from service.storage.keys import all_partitions

USERS = (10_000, 100_000, 1_000_000)
SIZES = (10, 50, 200)
ENVELOPE_SIZE = 200  # the producers' default, and the ingestion phases'
# Fewer events per user than `generate` gives over 90 days (about 14 for the fintech
# profile): how many histories to lay over the same users is worked out from this.
MIN_EVENTS_PER_USER = 10


def sweep_events(users: int, events: int, *, start_ms: int, seed: int) -> Iterator[dict[str, Any]]:
    """Exactly `events` events of exactly `users` distinct users, in time order.

    `generate` cut to the first `events` holds far fewer users than it was asked for:
    users arrive over the whole 90 days with a session of several events each, so the
    first 3,000 events of 3,000 users hold about 500 of them. Here every user's first
    event is kept, and the other events in time order until the count is reached: at as
    many users as events, one event each. When the users' histories hold too few events,
    several seeds' histories are laid over the same user ids (their event ids differ).
    """
    if not 0 < users <= events:
        raise ValueError(f"a sweep point needs 0 < users <= events, not {users:,} users, {events:,} events")
    layers = math.ceil(events / (users * MIN_EVENTS_PER_USER))
    profile = load_profile("fintech")
    histories = [
        generate(users=users, start_ms=start_ms, days=90, seed=seed + i, profile=profile)
        for i in range(layers)
    ]
    seen: set[str] = set()
    others = events - users
    for event in heapq.merge(*histories, key=_ts):
        if event["user_id"] not in seen:
            seen.add(event["user_id"])
        elif others > 0:
            others -= 1
        else:
            continue
        yield event
        if others == 0 and len(seen) == users:
            return
    raise ValueError(f"{layers} histories of {users:,} users hold fewer than {events:,} events")


def _ts(event: dict[str, Any]) -> int:
    ts: int = event["ts"]
    return ts


def users_present(redis_url: str, prefix: str, partitions: int) -> int:
    """Users the workers of `prefix` hold in Redis: what a point really had, whatever it was fed."""
    client = redis.Redis.from_url(redis_url)
    try:
        pipe = client.pipeline(transaction=False)
        for k in all_partitions(prefix, partitions):
            pipe.hlen(k.users)
        return sum(int(n) for n in pipe.execute())
    finally:
        client.close()


@dataclass(frozen=True)
class Sweeps:
    """What the points of every sweep share: broker, Redis, partitions and events per point."""

    bootstrap: str
    redis_url: str
    partitions: int
    events: int
    start_ms: int
    work: Path
    phases: Phases
    done: Callable[[str, str], None]

    def by_users(self, users: Iterable[int]) -> dict[str, dict[str, Any]]:
        """One point per number of distinct users, envelopes of `ENVELOPE_SIZE` events."""
        return {str(n): self.point("by_users", n, n, ENVELOPE_SIZE) for n in users}

    def by_envelope_size(self, sizes: Sequence[int], users: int) -> dict[str, dict[str, Any]]:
        """One point per envelope size, the same events of `users` users at each."""
        return {str(size): self.point("by_envelope_size", size, users, size) for size in sizes}

    def point(self, sweep: str, key: int, users: int, envelope_size: int) -> dict[str, Any]:
        """Pre-load a topic of the point's own, then one worker on it with a key prefix and app
        id of its own (named `{sweep}-{key}`); `{sweep}/{key}` in `timed_out` if it times out."""
        name = f"{sweep}/{key}"
        prefix = f"{sweep}-{key}"
        topic = f"sweep-{prefix}"
        create_topics(self.bootstrap, {topic: self.partitions, f"{topic}.dlq": self.partitions})
        publisher = EventPublisher(self.bootstrap, topic, self.partitions, envelope_size=envelope_size)
        try:
            events = sweep_events(users, self.events, start_ms=self.start_ms, seed=11)
            progress = tqdm(events, f"pre-load {topic}", self.events, leave=False, file=sys.stderr, unit="ev")
            publisher.publish(progress)
            publisher.flush()
        finally:
            publisher.close()
        env = worker_env(self.bootstrap, self.redis_url, topic, self.partitions, prefix)
        measured = self.phases.details(
            name,
            lambda: measure_worker(
                env, self.redis_url, prefix, self.partitions, self.events, self.work / prefix
            ),
        )
        result = {
            "events_per_s": measured["events_per_s"],
            "cpu_s_per_million": measured["cpu_s_per_million"],
            "redis_cpu_s_per_million": measured["redis_cpu_s_per_million"],
            "users_present": users_present(self.redis_url, prefix, self.partitions),
        }
        self.done(
            name,
            f"{result['events_per_s']:,} ev/s, {result['cpu_s_per_million']} CPU s/M, Redis "
            f"{result['redis_cpu_s_per_million']} CPU s/M, {result['users_present']:,} users",
        )
        return result
