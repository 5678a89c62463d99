"""The exit policy: a re-base outside a rebalance asks for a restart (75), anything else is a bug (70)."""

from __future__ import annotations

import logging
from typing import NoReturn

import pytest

from service.worker.claims import RepositionRequired
from service.worker.exits import EX_SOFTWARE, EX_TEMPFAIL, exit_for


class Exited(Exception):
    def __init__(self, reason: str, code: int) -> None:
        super().__init__(reason, code)
        self.reason = reason
        self.code = code


def record_exit(reason: str, code: int) -> NoReturn:
    """What `crash` would end the process with, as an exception the test can catch."""
    raise Exited(reason, code)


def test_a_partition_to_reposition_exits_with_tempfail_and_its_reason() -> None:
    with pytest.raises(Exited) as info:
        exit_for(RepositionRequired("partition 3 was re-based"), "applying a batch", record_exit)
    assert (info.value.code, info.value.reason) == (EX_TEMPFAIL, "partition 3 was re-based")


def test_anything_else_exits_as_a_software_error_with_its_traceback_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    try:
        raise ValueError("not expected")
    except ValueError as exc:
        with caplog.at_level(logging.CRITICAL), pytest.raises(Exited) as info:
            exit_for(exc, "applying a batch", record_exit)
    assert (info.value.code, info.value.reason) == (EX_SOFTWARE, "")
    (record,) = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert record.getMessage() == "unexpected error applying a batch; exiting"
    assert record.exc_info is not None and record.exc_info[0] is ValueError
