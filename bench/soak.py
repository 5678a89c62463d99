"""Soak: the worker at a steady fraction of its measured capacity for minutes on end.

Capacity drifts with everything else on the machine, so it is measured here, in the same
conditions as the soak: the same broker, Redis, worker and envelope producer, the producer
running flat out for `--capacity-seconds`; capacity is the worker's commit rate over that
phase (or the producer's rate, if the worker kept up). After the backlog drains, the
producer offers `--load` x capacity for `--minutes`, and every `--sample` seconds the run
records the consumer lag (events acknowledged by the broker but not yet committed to
Redis, and messages between the log end and the applied offsets), the worker's RSS and
CPU, Redis `used_memory`, the de-duplication sets' share of it and the number of users.

What must hold: lag bounded, worker RSS and Redis bytes per user flat. De-duplication
digests grow with the events of the window by design (64 B per event id, kept for
`LIFECYCLE_DEDUP_WINDOW` + 1 h), so Redis bytes per user count the state keys only, and
the growth of the rest of `used_memory` is reported per event.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from itertools import islice
from pathlib import Path
from typing import Any

import redis
from kafka import KafkaConsumer, TopicPartition

from bench.worker_phase import cpu_seconds
from service.core.profile import load_profile
from service.dev.generator import generate
from service.dev.kafka_broker import KafkaBroker, TansuBroker
from service.dev.redis_server import RedisServer
from service.kafka.publisher import EventPublisher
from service.kafka.topics import create_topics
from service.storage.keys import all_partitions

TICK_S = 0.05
TOPIC = "soak"
PREFIX = "soak"


class Producer(threading.Thread):
    """Offers `rate` events/s in 50 ms ticks (None: as fast as it can), each tick acknowledged.

    Events are templates from the synthetic generator with a fresh id and the wall time
    as ts, so the user population is fixed and every event is new to the worker.
    """

    def __init__(self, bootstrap: str, partitions: int, templates: list[dict[str, Any]]) -> None:
        super().__init__(daemon=True)
        self.publisher = EventPublisher(bootstrap, TOPIC, partitions, envelope_size=200)
        self.templates = templates
        self.rate: float | None = None
        self.acked = 0  # events the broker acknowledged
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self._n = 0

    def run(self) -> None:
        next_tick = time.perf_counter()
        try:
            while not self.stopping.is_set():
                count = 5000 if self.rate is None else max(1, round(self.rate * TICK_S))
                now_ms = int(time.time() * 1000)
                batch = []
                for _ in range(count):
                    template = self.templates[self._n % len(self.templates)]
                    batch.append({**template, "event_id": f"soak-{self._n}", "ts": now_ms})
                    self._n += 1
                self.publisher.publish(batch)
                self.publisher.flush()
                self.acked += count
                if self.rate is None:
                    continue
                next_tick += TICK_S
                delay = next_tick - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                else:
                    next_tick = time.perf_counter()  # behind: do not burst to catch up
        except BaseException as exc:  # reported by the main thread
            self.error = exc
        finally:
            self.publisher.close()


class Probe:
    """Reads what a sample holds: applied events, lag, worker RSS and CPU, Redis memory."""

    def __init__(self, bootstrap: str, redis_url: str, partitions: int, worker_pid: int) -> None:
        self.redis = redis.Redis.from_url(redis_url)
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap)
        self.tps = [TopicPartition(TOPIC, p) for p in range(partitions)]
        self.keys = all_partitions(PREFIX, partitions)
        self.pid = worker_pid

    def applied(self) -> int:
        pipe = self.redis.pipeline(transaction=False)
        for k in self.keys:
            pipe.hget(k.counters, "applied")
        return sum(int(v) for v in pipe.execute() if v is not None)

    def sample(self, producer: Producer, started: float) -> dict[str, Any]:
        acked = producer.acked
        pipe = self.redis.pipeline(transaction=False)
        for k in self.keys:
            pipe.hget(k.counters, "applied")
            pipe.hget(k.meta, "offset")
            pipe.hlen(k.users)
        replies = pipe.execute()
        applied = sum(int(v) for v in replies[0::3] if v is not None)
        offsets = [int(v) if v is not None else -1 for v in replies[1::3]]
        users = sum(int(v) for v in replies[2::3])
        ends = self.consumer.end_offsets(self.tps)
        lag_messages = sum(max(0, ends[tp] - 1 - offsets[tp.partition]) for tp in self.tps)
        used = int(self.redis.info("memory")["used_memory"])
        # Every key but the de-duplication sets, measured exactly (SAMPLES 0: they are small);
        # the digests are what remains of used_memory (with Redis's own overhead).
        state_keys = [k for k in self.redis.scan_iter(match=f"{PREFIX}:*", count=1000) if b":dd:" not in k]
        pipe = self.redis.pipeline(transaction=False)
        for key in state_keys:
            pipe.memory_usage(key, samples=0)
        state = sum(int(v or 0) for v in pipe.execute())
        return {
            "t": round(time.monotonic() - started, 1),
            "acked_events": acked,
            "applied_events": applied,
            "lag_events": max(0, acked - applied),
            "lag_messages": lag_messages,
            "worker_rss_mb": round(_rss_mb(self.pid), 1),
            "worker_cpu_s": round(cpu_seconds(self.pid), 1),
            "redis_used_bytes": used,
            "redis_state_bytes": state,
            "users": users,
            "load_average_1m": round(os.getloadavg()[0], 2),  # the machine is shared: how much
        }

    def close(self) -> None:
        self.consumer.close()
        self.redis.close()


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _check(worker: subprocess.Popen[bytes], producer: Producer, log: Path) -> None:
    if worker.poll() is not None:
        raise SystemExit(f"the worker exited with {worker.returncode}; see {log}")
    if producer.error is not None:
        raise SystemExit(f"the producer failed: {producer.error!r}")


def measure_capacity(
    probe: Probe, producer: Producer, worker: subprocess.Popen[bytes], seconds: float, log: Path
) -> dict[str, Any]:
    """Producer flat out for `seconds` (the first fifth is warm-up, not measured)."""
    producer.rate = None
    warmup = seconds / 5
    time.sleep(warmup)
    t0, acked0, applied0 = time.perf_counter(), producer.acked, probe.applied()
    while time.perf_counter() - t0 < seconds - warmup:
        _check(worker, producer, log)
        time.sleep(1)
    elapsed = time.perf_counter() - t0
    produced = (producer.acked - acked0) / elapsed
    committed = (probe.applied() - applied0) / elapsed
    producer.rate = 0.001  # pause (one event per tick, effectively idle) while the backlog drains
    worker_bound = committed < 0.95 * produced
    return {
        "seconds": seconds,
        "producer_events_per_s": round(produced),
        "worker_events_per_s": round(committed),
        "bound_by": "worker" if worker_bound else "producer",
        "capacity_events_per_s": round(committed if worker_bound else produced),
    }


def drain(probe: Probe, producer: Producer, worker: subprocess.Popen[bytes], log: Path) -> float:
    started = time.perf_counter()
    while probe.applied() < producer.acked:
        _check(worker, producer, log)
        time.sleep(0.5)
    return time.perf_counter() - started


def _mean(samples: list[dict[str, Any]], key: str) -> float:
    return statistics.fmean(s[key] for s in samples)


def summarize(samples: list[dict[str, Any]], window_s: float = 60) -> dict[str, Any]:
    """First minute against last minute: drift of RSS and of Redis bytes per user."""
    end = samples[-1]["t"]
    first = [s for s in samples if s["t"] <= samples[0]["t"] + window_s]
    last = [s for s in samples if s["t"] >= end - window_s]

    def per_user(group: list[dict[str, Any]]) -> float:
        return statistics.fmean(s["redis_state_bytes"] / s["users"] for s in group)

    rss_first, rss_last = _mean(first, "worker_rss_mb"), _mean(last, "worker_rss_mb")
    bpu_first, bpu_last = per_user(first), per_user(last)
    events = samples[-1]["applied_events"] - samples[0]["applied_events"]
    rest = [s["redis_used_bytes"] - s["redis_state_bytes"] for s in (samples[0], samples[-1])]
    dedup_growth = rest[1] - rest[0]
    cpu = samples[-1]["worker_cpu_s"] - samples[0]["worker_cpu_s"]
    return {
        "duration_s": round(end - samples[0]["t"], 1),
        "applied_events_per_s": round(events / (end - samples[0]["t"])),
        "lag_events_max": max(s["lag_events"] for s in samples),
        "lag_events_final": samples[-1]["lag_events"],
        "lag_messages_max": max(s["lag_messages"] for s in samples),
        "lag_messages_final": samples[-1]["lag_messages"],
        "worker_rss_mb_first_minute": round(rss_first, 1),
        "worker_rss_mb_last_minute": round(rss_last, 1),
        "worker_rss_drift_pct": round((rss_last - rss_first) / rss_first * 100, 1),
        "worker_cpu_share": round(cpu / (end - samples[0]["t"]), 2),
        "users": samples[-1]["users"],
        "redis_bytes_per_user_first_minute": round(bpu_first),
        "redis_bytes_per_user_last_minute": round(bpu_last),
        "redis_bytes_per_user_drift_pct": round((bpu_last - bpu_first) / bpu_first * 100, 1),
        "dedup_bytes_per_event": round(dedup_growth / events, 1) if events else None,
        "load_average_1m_mean": round(_mean(samples, "load_average_1m"), 2),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="lifecycle-soak-"))
    broker_cls = KafkaBroker if args.broker == "kafka" else TansuBroker
    profile = load_profile("daily_app")
    templates = list(
        islice(generate(users=args.users, start_ms=0, days=30, seed=11, profile=profile), args.templates)
    )
    with RedisServer(work / "redis") as rds, broker_cls(work / "broker") as broker:
        create_topics(broker.bootstrap, {TOPIC: args.partitions, f"{TOPIC}.dlq": args.partitions})
        env = {
            **os.environ,
            "LIFECYCLE_KAFKA_BOOTSTRAP": broker.bootstrap,
            "LIFECYCLE_REDIS_URL": rds.url,
            "LIFECYCLE_EVENTS_TOPIC": TOPIC,
            "LIFECYCLE_DLQ_TOPIC": f"{TOPIC}.dlq",
            "LIFECYCLE_TRIGGERS_TOPIC": f"{TOPIC}.triggers",
            "LIFECYCLE_PARTITIONS": str(args.partitions),
            "LIFECYCLE_PROFILE": profile.name,
            "LIFECYCLE_CLOCK": "wall",
            "LIFECYCLE_KEY_PREFIX": PREFIX,
            "LIFECYCLE_APP_ID": "soak",
            "LIFECYCLE_WORKER_PORT": "0",
            "LIFECYCLE_LOG_LEVEL": "WARNING",
        }
        log = work / "worker.log"
        with open(log, "wb") as out:
            worker = subprocess.Popen(
                [sys.executable, "-m", "service.cli", "worker"], env=env, stdout=out, stderr=out
            )
        producer = Producer(broker.bootstrap, args.partitions, templates)
        probe = Probe(broker.bootstrap, rds.url, args.partitions, worker.pid)
        try:
            producer.rate = 1000.0
            producer.start()
            deadline = time.monotonic() + 120
            while probe.applied() == 0:  # the worker joined its group and commits
                _check(worker, producer, log)
                if time.monotonic() > deadline:
                    raise SystemExit(f"the worker committed nothing in 120 s; see {log}")
                time.sleep(0.5)
            capacity = measure_capacity(probe, producer, worker, args.capacity_seconds, log)
            print(f"capacity: {capacity}", file=sys.stderr)
            drained = drain(probe, producer, worker, log)
            offered = round(args.load * capacity["capacity_events_per_s"])
            producer.rate = offered
            started = time.monotonic()
            samples = []
            while time.monotonic() - started < args.minutes * 60:
                _check(worker, producer, log)
                samples.append(probe.sample(producer, started))
                print(json.dumps(samples[-1]), file=sys.stderr)
                time.sleep(args.sample)
            samples.append(probe.sample(producer, started))
            produced = (samples[-1]["acked_events"] - samples[0]["acked_events"]) / (
                samples[-1]["t"] - samples[0]["t"]
            )
            producer.rate = 0.001  # the lag left at the end drains: it was bounded, not growing for good
            drained_after = drain(probe, producer, worker, log)
        finally:
            producer.stopping.set()
            producer.join(30)
            probe.close()
            worker.terminate()
            worker.wait(30)
        version = rds_version(rds.url)
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "broker": args.broker,
        "redis": version,
        "partitions": args.partitions,
        "users": args.users,
        "capacity": capacity,
        "drain_s": round(drained, 1),
        "load": args.load,
        "offered_events_per_s": offered,
        "produced_events_per_s": round(produced),
        "summary": {**summarize(samples), "drained_after_end_s": round(drained_after, 1)},
        "samples": samples,
    }


def rds_version(url: str) -> str:
    client = redis.Redis.from_url(url)
    try:
        return str(client.info("server")["redis_version"])
    finally:
        client.close()


def table(result: dict[str, Any]) -> str:
    s, c = result["summary"], result["capacity"]
    return "\n".join(
        [
            f"capacity {c['capacity_events_per_s']:,} ev/s (bound by the {c['bound_by']}; "
            f"producer {c['producer_events_per_s']:,}, worker {c['worker_events_per_s']:,})",
            f"soak {s['duration_s']} s at {result['offered_events_per_s']:,} ev/s offered "
            f"({result['load']:.0%}), {result['produced_events_per_s']:,} produced, "
            f"{s['applied_events_per_s']:,} applied",
            f"lag events max {s['lag_events_max']:,} final {s['lag_events_final']:,}; "
            f"messages max {s['lag_messages_max']:,} final {s['lag_messages_final']:,}; "
            f"drained {s['drained_after_end_s']} s after the end; "
            f"load average {s['load_average_1m_mean']} on {result['machine']['cpus']} CPUs",
            f"worker RSS {s['worker_rss_mb_first_minute']} MB first minute, "
            f"{s['worker_rss_mb_last_minute']} MB last ({s['worker_rss_drift_pct']:+}%), "
            f"CPU {s['worker_cpu_share']} cores",
            f"Redis state bytes per user {s['redis_bytes_per_user_first_minute']} -> "
            f"{s['redis_bytes_per_user_last_minute']} ({s['redis_bytes_per_user_drift_pct']:+}%) "
            f"at {s['users']:,} users; the rest of used_memory (dedup digests) grew "
            f"{s['dedup_bytes_per_event']} B per event",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--broker", choices=("kafka", "tansu"), default="kafka")
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--load", type=float, default=0.7, help="fraction of the measured capacity")
    parser.add_argument("--capacity-seconds", type=float, default=40)
    parser.add_argument("--sample", type=float, default=5, help="seconds between samples")
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--templates", type=int, default=200_000, help="distinct event shapes cycled")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--json", help="also write the result to this file")
    args = parser.parse_args()
    result = run(args)
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
