"""A benchmark phase that runs past `BENCH_PHASE_TIMEOUT` is recorded as timed out, with the
rate it had reached, and the run goes on: one slow phase no longer costs every result."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from bench.ingest import Phases, PhaseTimedOut, measure_peer, table

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
