"""A benchmark phase's time limit: one that runs past it is recorded with the rate it had
reached and the run goes on, so one slow phase no longer costs every other result."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any


def phase_timeout() -> float:
    """Seconds a phase may run (`BENCH_PHASE_TIMEOUT`, default 900)."""
    return float(os.environ.get("BENCH_PHASE_TIMEOUT", "900"))


class PhaseTimedOut(Exception):
    """A phase ran past `BENCH_PHASE_TIMEOUT`: the rate it had reached (0 if unknown)."""

    def __init__(self, reached: float) -> None:
        super().__init__(f"timed out at {reached:,.0f} ev/s")
        self.reached = reached


class Phases:
    """Runs the phases, recording one that times out with the rate it reached, so the run
    goes on and the results say which phases timed out."""

    def __init__(self) -> None:
        self.timed_out: list[str] = []

    def rate(self, name: str, measure: Callable[[], float]) -> float:
        try:
            return measure()
        except PhaseTimedOut as exc:
            self.timed_out.append(name)
            return exc.reached

    def details(self, name: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        try:
            return measure()
        except PhaseTimedOut as exc:
            self.timed_out.append(name)
            return {
                "events_per_s": round(exc.reached),
                "cpu_s_per_million": None,
                "redis_cpu_s_per_million": None,
                "peak_rss_mb": None,
            }
