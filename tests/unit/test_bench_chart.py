"""`make bench` draws the sweeps into docs/benchmark-sweeps.png: a PNG of one panel per sweep,
whatever points timed out (no CPU figures) or are missing."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

from bench.chart import DPI, PANEL_INCHES, draw

ROOT = Path(__file__).resolve().parents[2]


def _point(rate: int, cpu: float | None, redis_cpu: float | None, users: int) -> dict[str, object]:
    return {
        "events_per_s": rate,
        "cpu_s_per_million": cpu,
        "redis_cpu_s_per_million": redis_cpu,
        "users_present": users,
    }


RESULT = {
    "sweep_events": 1_000_000,
    "timed_out": ["by_users/1000000"],
    "by_users": {
        "10000": _point(45_000, 20.1, 3.9, 10_000),
        "100000": _point(41_000, 22.4, 4.6, 100_000),
        "1000000": _point(12_000, None, None, 640_000),
    },
    "by_envelope_size": {
        "10": _point(30_000, 31.0, 7.5, 100_000),
        "50": _point(39_000, 24.2, 5.1, 100_000),
        "200": _point(42_000, 22.0, 4.5, 100_000),
    },
}


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_both_sweeps_are_drawn_side_by_side(tmp_path: Path) -> None:
    out = tmp_path / "docs" / "benchmark-sweeps.png"
    draw(RESULT, out)
    assert _png_size(out) == (round(2 * PANEL_INCHES[0] * DPI), round(PANEL_INCHES[1] * DPI))
    assert 10_000 < out.stat().st_size < 1_000_000


def test_one_sweep_is_one_panel(tmp_path: Path) -> None:
    out = tmp_path / "one.png"
    draw({"by_envelope_size": RESULT["by_envelope_size"]}, out)
    assert _png_size(out) == (round(PANEL_INCHES[0] * DPI), round(PANEL_INCHES[1] * DPI))


def test_results_without_sweeps_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no sweep"):
        draw({"rates": {"limit": 1}}, tmp_path / "none.png")
    (tmp_path / "results.json").write_text('{"rates": {"limit": 1}}')
    proc = subprocess.run(
        [sys.executable, "-m", "bench.chart", str(tmp_path / "results.json"), str(tmp_path / "none.png")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "--phases by_users,by_envelope_size" in proc.stderr
    assert not (tmp_path / "none.png").exists()
