"""The service's own processes, started as a user starts them, for integration tests.

`ServiceProcess` runs `lifecycle worker` / `lifecycle api` as child processes with
`LIFECYCLE_*` settings in their environment, so tests exercise the real command line,
the real Faust worker and real sockets. Helpers wait on observable facts (offsets
applied in Redis, an HTTP answer), never on sleeps.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import redis
from kafka import KafkaConsumer, TopicPartition

from service.storage.keys import PartitionKeys


class ServiceProcess:
    def __init__(
        self, command: str, env: Mapping[str, str], log_path: Path, args: Sequence[str] = ()
    ) -> None:
        self.command = command
        self.args = list(args)
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", self.command, *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def kill(self) -> None:
        """SIGKILL: the crash the worker must survive without loss or double counting."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def wait_for(
    predicate: Callable[[], Any], timeout: float, what: str, proc: ServiceProcess | None = None
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and not proc.alive():
            raise AssertionError(f"{proc.command} exited while waiting for {what}:\n{proc.log_tail()}")
        time.sleep(0.2)
    tail = proc.log_tail() if proc else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{tail}")


def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        return {tp.partition: off for tp, off in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def sync_redis(redis_url: str, cluster: bool = False) -> redis.Redis | redis.RedisCluster:
    """A blocking client for tests' checks, cluster-aware like the service's."""
    return redis.RedisCluster.from_url(redis_url) if cluster else redis.Redis.from_url(redis_url)


def applied_offsets(redis_url: str, prefix: str, partitions: int, cluster: bool = False) -> dict[int, int]:
    client = sync_redis(redis_url, cluster)
    try:
        out = {}
        for p in range(partitions):
            raw = client.hget(PartitionKeys(prefix, p).meta, "offset")
            out[p] = int(raw) if raw is not None else -1
        return out
    finally:
        client.close()


def wait_applied(
    redis_url: str,
    prefix: str,
    bootstrap: str,
    topic: str,
    partitions: int,
    timeout: float,
    proc: ServiceProcess,
    acked: dict[int, int] | None = None,
    cluster: bool = False,
) -> None:
    """Wait until every message of the topic is committed to Redis by the worker.

    `acked` holds the highest offset per partition the broker acknowledged to the test's
    producer: end offsets are not trusted below it (Tansu answers ListOffsets with the
    base offset of the last record batch plus one, not the high watermark). End offsets
    are read again once reached: the worker may have appended meanwhile (events re-routed).
    """
    acked = acked or {}
    deadline = time.monotonic() + timeout

    def caught_up() -> dict[int, int] | None:
        ends = end_offsets(bootstrap, topic, partitions)
        if not sum(ends.values()):
            return None
        return {p: max(end, acked.get(p, -1) + 1) for p, end in ends.items()}

    while True:
        ends = wait_for(caught_up, 30, f"{topic} offsets")

        def done(ends: dict[int, int] = ends) -> bool:
            applied = applied_offsets(redis_url, prefix, partitions, cluster)
            return all(ends[p] == 0 or applied[p] >= ends[p] - 1 for p in range(partitions))

        wait_for(done, max(deadline - time.monotonic(), 1), f"all of {topic} applied", proc)
        if caught_up() == ends:
            return
