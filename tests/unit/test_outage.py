"""The pause on a Redis outage: bounded backoff, one warning per outage, a gauge that follows."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry, Gauge

from service.worker.outage import Outage, backoff_delay


def test_backoff_doubles_from_a_tenth_of_a_second_up_to_five() -> None:
    assert [backoff_delay(n) for n in range(8)] == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    assert backoff_delay(10_000) == 5.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_outage_warns_once_reminds_every_30s_and_ends_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    gauge = Gauge("paused", "test", registry=CollectorRegistry())
    outage = Outage(gauge, clock)
    assert not outage.paused and outage.retry_due()
    caplog.set_level(logging.WARNING, "service.worker.outage")
    waited = 0.0
    while clock.now <= 165:  # 65 s of failures
        delay = outage.failed(ConnectionError("refused"))
        assert outage.paused and not outage.retry_due()
        clock.now += delay
        waited += delay
        assert outage.retry_due()
    assert gauge._value.get() == 1
    messages = [r.getMessage() for r in caplog.records]
    assert sum("Redis unavailable (ConnectionError: refused)" in m for m in messages) == 1
    assert sum("still unavailable" in m for m in messages) == 2  # past 30 s and past 60 s
    assert outage.seconds() == pytest.approx(waited)
    outage.recovered()
    assert not outage.paused and outage.seconds() == 0 and gauge._value.get() == 0
    assert "available again after 6" in caplog.records[-1].getMessage()
    outage.recovered()  # no outage: nothing to say
    assert len(caplog.records) == len(messages) + 1
    assert outage.failed(ConnectionError("again")) == 0.1  # a new outage backs off from the start


def test_a_single_failed_call_pauses_but_warns_nobody(caplog: pytest.LogCaptureFixture) -> None:
    """A pooled connection from before a Redis restart fails once; the retry succeeds."""
    outage = Outage(clock=Clock())
    caplog.set_level(logging.INFO, "service.worker.outage")
    outage.failed(ConnectionError("Connection closed by server."))
    assert outage.paused
    outage.recovered()
    assert not outage.paused
    assert [r.levelno for r in caplog.records] == [logging.INFO, logging.INFO]


def test_error_replies_that_pass_with_time_are_an_outage_and_others_are_not() -> None:
    from redis.exceptions import (
        BusyLoadingError,
        ClusterDownError,
        NoScriptError,
        OutOfMemoryError,
        ReadOnlyError,
        ResponseError,
        TryAgainError,
    )

    from service.worker.outage import passes_with_time, refuses_writes

    passing = [
        ReadOnlyError("You can't write against a read only replica."),
        OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
        BusyLoadingError("Redis is loading the dataset in memory"),
        ResponseError("BUSY Redis is busy running a script."),
        ClusterDownError("The cluster is down"),
        TryAgainError("Multiple keys request during rehashing of slot"),
        ResponseError("MISCONF Redis is configured to save RDB snapshots, but it's unable to persist"),
        ConnectionRefusedError(),
    ]
    assert all(passes_with_time(exc) for exc in passing)
    bugs = [ResponseError("ERR wrong number of arguments"), NoScriptError("No matching script"), ValueError()]
    assert not any(passes_with_time(exc) for exc in bugs)
    assert refuses_writes(passing[0]) and refuses_writes(passing[1]) and refuses_writes(passing[6])
    assert not refuses_writes(passing[3]) and not refuses_writes(passing[7])
