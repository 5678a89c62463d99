"""A sweep point holds exactly the events and the distinct users it is named for: cut to its
first events, the generator's stream holds far fewer users than it was asked for."""

from __future__ import annotations

import subprocess
import sys
from itertools import islice
from pathlib import Path

import pytest

from bench.ingest import START_MS, table
from bench.sweeps import sweep_events
from service.core.profile import load_profile
from service.dev.generator import generate

ROOT = Path(__file__).resolve().parents[2]


def test_the_generator_cut_to_a_count_holds_fewer_users_than_asked() -> None:
    events = islice(
        generate(users=3000, start_ms=START_MS, days=90, seed=11, profile=load_profile("fintech")), 3000
    )
    assert len({e["user_id"] for e in events}) < 1000


@pytest.mark.parametrize(
    ("users", "events"),
    [
        (3000, 3000),  # as many users as events: one event each
        (300, 3000),  # ten each, from one history
        (20, 3000),  # 150 each: several histories over the same users
    ],
)
def test_a_point_has_exactly_its_events_and_users(users: int, events: int) -> None:
    drawn = list(sweep_events(users, events, start_ms=START_MS, seed=11))
    assert len(drawn) == events
    assert len({e["user_id"] for e in drawn}) == users
    assert len({e["event_id"] for e in drawn}) == events
    assert [e["ts"] for e in drawn] == sorted(e["ts"] for e in drawn)
    assert drawn == list(sweep_events(users, events, start_ms=START_MS, seed=11))


def test_more_users_than_events_is_refused() -> None:
    with pytest.raises(ValueError, match="users <= events"):
        next(sweep_events(3001, 3000, start_ms=START_MS, seed=11))


def test_the_table_has_a_row_per_point_with_both_cpus_and_the_users() -> None:
    point = {"events_per_s": 40_000, "cpu_s_per_million": 22.5, "redis_cpu_s_per_million": 4.25}
    result = {
        "rates": {"limit": 200_000},
        "timed_out": ["by_users/1000000"],
        "sweep_events": 1_000_000,
        "by_users": {
            "10000": point | {"users_present": 10_000},
            "1000000": {
                "events_per_s": 9_000,
                "cpu_s_per_million": None,
                "redis_cpu_s_per_million": None,
                "users_present": 310_000,
            },
        },
        "by_envelope_size": {"10": point | {"users_present": 100_000}},
    }
    rows = table(result).splitlines()
    assert any(r.startswith("by_users (1,000,000 ev; CPU s/M)") for r in rows)
    assert "  10,000" in rows[3] and "22.50" in rows[3] and "4.25" in rows[3] and "10,000" in rows[3]
    assert rows[4].split()[:2] == ["1,000,000", "9,000"] and rows[4].endswith(
        "timed out (the rate it had reached)"
    )
    assert rows[5].startswith("by_envelope_size") and rows[6].split()[0] == "10"


def test_a_by_users_point_above_the_sweep_events_is_refused() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.ingest", "--phases", "by_users", "--sweep-events", "5000"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "--sweep-users: at most --sweep-events (5,000)" in proc.stderr
