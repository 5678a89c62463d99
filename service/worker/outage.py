"""The worker's view of a Redis outage: pause, back off, say so once, resume on its own.

While Redis does not answer, no batch can be committed, so none is acknowledged to Kafka
either (Faust acks a batch only after `PartitionProcessor.process` returns): the stream
pauses where Redis's applied offsets are. Retries follow a bounded exponential backoff,
so a long outage costs a connection attempt every few seconds, not a busy loop; the
pause is visible as a gauge, on the worker's `/readyz`, and as one warning once it
outlasts a retry (then one every `remind_s`) and one when it ends. Messages carry the exception
text of the Redis client (host, port, errno), never event or user data.

A Redis that answers with an error can be out just the same: READONLY after a failover
(the old primary is a replica now), OOM at `maxmemory` with `noeviction`, BUSY while a
script runs, LOADING after a restart, CLUSTERDOWN or TRYAGAIN mid-failover, MISCONF
while it cannot persist. Each passes with time and none with a restart of the worker, so
`passes_with_time` counts them as an outage too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from prometheus_client import Gauge
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)


_OUTAGE_ERRORS = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    ReadOnlyError,
    OutOfMemoryError,
    BusyLoadingError,
    ClusterDownError,
    TryAgainError,
    MasterDownError,
)
# Error replies the client library has no class for (Redis's own prefixes).
_OUTAGE_REPLIES = (
    "READONLY",
    "OOM",
    "BUSY",
    "LOADING",
    "CLUSTERDOWN",
    "TRYAGAIN",
    "MASTERDOWN",
    "NOREPLICAS",
    "MISCONF",
)


def passes_with_time(exc: BaseException) -> bool:
    """Whether `exc` means Redis is unavailable for now (retry later), not a bug."""
    if isinstance(exc, _OUTAGE_ERRORS):
        return True
    return isinstance(exc, ResponseError) and str(exc).lstrip().upper().startswith(_OUTAGE_REPLIES)


_WRITE_REFUSALS = ("READONLY", "OOM", "MISCONF", "NOREPLICAS")


def refuses_writes(exc: BaseException) -> bool:
    """Whether `exc` says Redis answers but takes no writes (a replica now, full, cannot
    persist): reads that succeed meanwhile do not end such an outage."""
    if isinstance(exc, ReadOnlyError | OutOfMemoryError):
        return True
    return isinstance(exc, ResponseError) and str(exc).lstrip().upper().startswith(_WRITE_REFUSALS)


def backoff_delay(attempt: int, first: float = 0.1, cap: float = 5.0) -> float:
    """Seconds to wait before retry number `attempt` (0-based): doubling from `first`, at most `cap`."""
    return min(first * 2.0 ** min(attempt, 32), cap)


class Outage:
    """Whether Redis is currently unavailable to this worker, since when, and when to retry."""

    def __init__(
        self,
        gauge: Gauge | None = None,
        clock: Callable[[], float] = time.monotonic,
        remind_s: float = 30.0,
    ) -> None:
        self.gauge = gauge
        self.clock = clock
        self.remind_s = remind_s
        self.since: float | None = None
        self.writes_refused = False  # the outage is Redis refusing writes, not Redis away
        self.attempts = 0
        self._next_try = 0.0
        self._reminded = 0.0

    @property
    def paused(self) -> bool:
        return self.since is not None

    def seconds(self) -> float:
        """How long the current outage has lasted (0 when there is none)."""
        return 0.0 if self.since is None else self.clock() - self.since

    def retry_due(self) -> bool:
        """Whether a caller without its own loop (the sweep timer) should try Redis now."""
        return self.since is None or self.clock() >= self._next_try

    def failed(self, exc: BaseException) -> float:
        """Record a failed Redis call; returns the seconds to wait before the next try.

        The first failure pauses (gauge) but is only logged at info: a connection the
        pool kept from before a Redis restart fails once and the retry succeeds. A second
        failure in a row is an outage: one warning, then one every `remind_s`.
        """
        now = self.clock()
        delay = backoff_delay(self.attempts)
        self.attempts += 1
        self.writes_refused = refuses_writes(exc)
        self._next_try = now + delay
        if self.since is None:
            self.since = now
            if self.gauge is not None:
                self.gauge.set(1)
            log.info("Redis call failed (%s: %s); retrying in %.1fs", type(exc).__name__, exc, delay)
        elif self.attempts == 2:
            self._reminded = now
            log.warning(
                "Redis unavailable (%s: %s): pausing; batches are retried with backoff up to %.0fs "
                "and no Kafka offset is committed until Redis acknowledges them",
                type(exc).__name__,
                exc,
                backoff_delay(64),
            )
        elif now - self._reminded >= self.remind_s:
            self._reminded = now
            log.warning(
                "Redis still unavailable after %.0fs (%s: %s)", now - self.since, type(exc).__name__, exc
            )
        return delay

    def recovered(self) -> None:
        """Record a successful Redis call: ends the outage, if there was one."""
        if self.since is None:
            return
        log.log(
            logging.WARNING if self.attempts > 1 else logging.INFO,
            "Redis available again after %.1fs and %d retries: resuming",
            self.seconds(),
            self.attempts,
        )
        self.since = None
        self.attempts = 0
        self.writes_refused = False
        if self.gauge is not None:
            self.gauge.set(0)
