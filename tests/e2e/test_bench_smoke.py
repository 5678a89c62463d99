"""The benchmark cannot rot: its smoke run completes, writes every key (the sweeps' included,
each point holding the users it is named for), and the service fed envelopes beats the
naive Faust app by more than five times."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_benchmark_smoke_run(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.ingest", "--smoke", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    result = json.loads(out.read_text())
    for key in (
        "machine",
        "versions",
        "broker",
        "events",
        "users",
        "rates",
        "cpu_s_per_million",
        "redis_cpu_s_per_million",
        "peak_rss_mb",
        "latency_ms",
        "redis_bytes_per_user",
        "sweep_s",
        "scale_2_workers",
        "by_users",
        "by_envelope_size",
    ):
        assert key in result, key
    rates = result["rates"]
    phases = {"limit", "replay_publish", "faust_floor", "naive_faust", "ours_envelopes", "ours_single"}
    phases |= {"ours_bridge", "ours_backfill"}
    assert phases <= set(rates)
    assert all(v > 0 for v in rates.values())
    assert rates["ours_envelopes"] > 5 * rates["naive_faust"], rates
    assert result["latency_ms"]["p50"] > 0 and result["latency_ms"]["p99"] >= result["latency_ms"]["p50"]
    assert set(result["sweep_s"]) == {"none", "crossing_1pct"}
    assert "ours_envelopes" in proc.stdout  # the table
    worker_phases = {"ours_envelopes", "ours_single", "ours_bridge", "ours_backfill", "scale_2_workers"}
    assert set(result["redis_cpu_s_per_million"]) == worker_phases
    assert all(v > 0 for v in result["redis_cpu_s_per_million"].values())
    # the smoke's points: as many users as events (one event each), and 10-event envelopes
    assert set(result["by_users"]) == {str(result["sweep_events"])}
    assert set(result["by_envelope_size"]) == {"10"}
    for users, point in result["by_users"].items():
        assert point["users_present"] == int(users), point
    assert result["by_envelope_size"]["10"]["users_present"] == min(result["users"], result["sweep_events"])
    for point in [*result["by_users"].values(), *result["by_envelope_size"].values()]:
        assert all(point[k] > 0 for k in ("events_per_s", "cpu_s_per_million", "redis_cpu_s_per_million"))
