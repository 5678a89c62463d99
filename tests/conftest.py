"""Fixtures that start real processes: a Kafka-protocol broker and redis-server, no mocks.

`LIFECYCLE_TEST_BROKER` picks the broker for the whole session: `tansu` (default;
starts in a fraction of a second, memory-only) or `kafka` (Apache Kafka 4.1 in KRaft
mode; run `scripts/fetch-kafka.sh` once first). The same tests run against both, so a
behaviour that differs is visible as a test that passes on one and fails on the other.

Processes are started once per session, on free ports, and stopped at its end; their
logs are under pytest's basetemp. Tests stay apart through names, not restarts: each
gets a flushed Redis and unique topic (and group) names.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from hypothesis import settings

from service.dev.kafka_broker import KafkaBroker, TansuBroker
from service.dev.redis_server import RedisServer
from tests.faults import figures

# `make test`'s profile: with the run's seed given on the command line, a failure prints
# the blob that replays its example, and no example database carries state between runs.
settings.register_profile("ci", print_blob=True, database=None)

BROKER_KINDS = ("tansu", "kafka")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With `LIFECYCLE_ONLY_BROKER_TESTS=1` (the Makefile's second pass, on Apache Kafka),
    keep only the tests that use the session's broker: the others ran the same way in the
    first pass (they use Redis alone, or start brokers of their own), so a second run would
    only repeat them."""
    if os.environ.get("LIFECYCLE_ONLY_BROKER_TESTS") != "1":
        return
    kept = [item for item in items if "broker" in getattr(item, "fixturenames", ())]
    deselected = [item for item in items if item not in kept]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The fault tests' `FAULTS ...` lines (`tests/faults/figures.py`), passed or failed,
    from their reports: under pytest-xdist this is where a worker's figures reach the log."""
    lines = [
        value
        for reports in terminalreporter.stats.values()
        for report in reports
        if getattr(report, "when", None) == "call"
        for name, value in getattr(report, "user_properties", ())
        if name == figures.PROPERTY
    ]
    if lines:
        terminalreporter.write_sep("=", "fault-injection figures")
        for line in lines:
            terminalreporter.write_line(line)


@dataclass(frozen=True)
class Broker:
    """The session's broker. `process` is there for restart and crash tests, which must
    leave it running again (`process.start()`) for the tests after them."""

    kind: str
    process: TansuBroker | KafkaBroker

    @property
    def bootstrap(self) -> str:
        return self.process.bootstrap


@pytest.fixture(scope="session")
def broker_kind() -> str:
    kind = os.environ.get("LIFECYCLE_TEST_BROKER", "tansu")
    if kind not in BROKER_KINDS:
        raise pytest.UsageError(f"LIFECYCLE_TEST_BROKER={kind!r}; expected one of {', '.join(BROKER_KINDS)}")
    return kind


@pytest.fixture(scope="session")
def stack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Work dir (data and logs) of the session's processes."""
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="session")
def broker(broker_kind: str, stack_dir: Path) -> Iterator[Broker]:
    process = TansuBroker(stack_dir / "tansu") if broker_kind == "tansu" else KafkaBroker(stack_dir / "kafka")
    with process:
        yield Broker(broker_kind, process)


@pytest.fixture(scope="session")
def redis_server(stack_dir: Path) -> Iterator[RedisServer]:
    with RedisServer(stack_dir / "redis") as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, emptied first so nothing a previous test left is visible."""
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url


@pytest.fixture
def topic_names(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """`topic_names("events")` -> a name unique to this test, the same on every call.

    Good for consumer groups too. The test's name is in it, to find its data in logs.
    """
    test = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:80]
    suffix = uuid.uuid4().hex[:8]
    names: dict[str, str] = {}

    def name(base: str) -> str:
        return names.setdefault(base, f"{base}-{test}-{suffix}")

    return name


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A fresh directory for this test's own processes and files."""
    return tmp_path
