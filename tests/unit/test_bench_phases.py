"""A benchmark phase that runs past `BENCH_PHASE_TIMEOUT` is recorded as timed out, with the
rate it had reached, and the run goes on: one slow phase no longer costs every result."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.ingest import measure_peer, table
from bench.phases import Phases, PhaseTimedOut

ROOT = Path(__file__).resolve().parents[2]


def test_a_timed_out_phase_is_recorded_with_its_rate_and_the_others_run() -> None:
    phases = Phases()

    def slow() -> float:
        raise PhaseTimedOut(1234.5)

    def slow_worker() -> dict[str, float]:
        raise PhaseTimedOut(99.0)

    assert phases.rate("naive_faust", slow) == 1234.5
    assert phases.rate("limit", lambda: 10.0) == 10.0
    assert phases.details("ours_single", slow_worker) == {
        "events_per_s": 99,
        "cpu_s_per_million": None,
        "redis_cpu_s_per_million": None,
        "peak_rss_mb": None,
    }
    assert phases.timed_out == ["naive_faust", "ours_single"]


def test_a_peer_past_the_phase_timeout_is_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sleeper.py").write_text("import time\ntime.sleep(120)\n")
    monkeypatch.setenv("BENCH_PHASE_TIMEOUT", "1")
    with pytest.raises(PhaseTimedOut):
        measure_peer("sleeper", sys.executable, {"PYTHONPATH": str(tmp_path)}, tmp_path / "sleeper.log")


def test_the_table_says_which_phases_timed_out() -> None:
    result = json.loads((ROOT / "bench" / "results.json").read_text())
    result["timed_out"] = ["naive_faust"]
    rows = {line.split()[0]: line for line in table(result).splitlines()}
    assert rows["naive_faust"].endswith("timed out (the rate it had reached)")
    assert "timed out" not in rows["ours_envelopes"]


def test_a_run_of_some_phases_has_a_table_of_what_ran() -> None:
    result = json.loads((ROOT / "bench" / "results.json").read_text())
    partial = {key: result[key] for key in ("machine", "versions", "broker", "events", "users", "partitions")}
    partial |= {
        "phases": ["ours_backfill"],
        "timed_out": [],
        "rates": {"limit": 200_000, "ours_backfill": 12_000},
        "cpu_s_per_million": {"ours_backfill": 70.0},
    }
    text = table(partial)
    assert "ours_backfill" in text and "latency" not in text and "CPU s per million events" in text


def test_an_unknown_phase_is_refused_with_the_known_ones() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.ingest", "--phases", "ours_backfill,warp"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "unknown phase(s) warp" in proc.stderr and "ours_envelopes" in proc.stderr
