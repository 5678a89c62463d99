"""A benchmark phase of `lifecycle worker` processes: their environment, and the rate, CPU
and memory they take to commit a pre-loaded topic to Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from tqdm import tqdm

from bench.phases import PhaseTimedOut, phase_timeout
from service.storage.keys import all_partitions

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """A process's CPU time so far (user + system), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu(procs: list[subprocess.Popen[bytes]]) -> float:
    return sum(cpu_seconds(p.pid) for p in procs)


def redis_cpu_seconds(client: redis.Redis) -> float:
    """The server's own CPU so far (`INFO cpu`, system + user), not its children's: a forked
    snapshot is not the cost of the commits."""
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


@dataclass(frozen=True)
class _Mark:
    """Where a phase's measured window starts: the first commit seen."""

    at: float
    done: int
    cpu: float
    redis_cpu: float


def applied(client: redis.Redis, prefix: str, partitions: int) -> int:
    """Events the workers of `prefix` have committed (applied, of unknown users, duplicates)."""
    pipe = client.pipeline(transaction=False)
    for k in all_partitions(prefix, partitions):
        pipe.hmget(k.counters, ["applied", "unknown_user_events", "duplicates"])
    return sum(int(v) for reply in pipe.execute() for v in reply if v is not None)


def worker_env(
    bootstrap: str, redis_url: str, topic: str, partitions: int, prefix: str, **extra: str
) -> dict[str, str]:
    """A worker's environment: its own key prefix and app id, so phases never share state."""
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


def measure_worker(
    env: dict[str, str],
    redis_url: str,
    prefix: str,
    partitions: int,
    total: int,
    log: Path,
    workers: int = 1,
    bridge_from: str | None = None,
) -> dict[str, Any]:
    """`workers` worker processes (and a bridge feeding them, if asked) until every event is
    committed; rate from the first commit to the last, CPU of all processes and of Redis over
    that window, peak RSS of one.

    Redis's CPU is the whole server's (phases run one at a time): it includes this loop's
    progress reads, one pipelined HMGET per partition every 20 ms, small beside the commits."""
    commands = [["worker"]] * workers + ([["bridge", "--from", bridge_from]] if bridge_from else [])
    procs = []
    for i, command in enumerate(commands):
        with open(log.with_suffix(f".{i}.log"), "wb") as out:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "service.cli", *command], env=env, stdout=out, stderr=out
                )
            )
    client = redis.Redis.from_url(redis_url)
    try:
        first: _Mark | None = None
        deadline = time.monotonic() + phase_timeout()
        done = 0
        while done < total:
            if any(p.poll() is not None for p in procs):
                raise SystemExit(f"a process stopped at {done}/{total}; see {log}.*")
            if time.monotonic() > deadline:
                reached = 0.0 if first is None else (done - first.done) / (time.perf_counter() - first.at)
                tqdm.write(f"{prefix}: timed out at {done}/{total} events; see {log}.*", file=sys.stderr)
                raise PhaseTimedOut(reached)
            done = applied(client, prefix, partitions)
            if first is None and done > 0:
                first = _Mark(time.perf_counter(), done, _cpu(procs), redis_cpu_seconds(client))
            time.sleep(0.02)
        assert first is not None
        elapsed = time.perf_counter() - first.at
        measured = total - first.done
        if measured <= 0:
            raise SystemExit(f"{prefix}: all {total} events were committed at once: too few to time")
        per_million = 1e6 / measured
        return {
            "events_per_s": round(measured / elapsed),
            "cpu_s_per_million": round((_cpu(procs) - first.cpu) * per_million, 2),
            "redis_cpu_s_per_million": round((redis_cpu_seconds(client) - first.redis_cpu) * per_million, 2),
            "peak_rss_mb": round(max(_peak_rss_mb(p.pid) for p in procs), 1),
        }
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
        client.close()
