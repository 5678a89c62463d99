"""The benchmark's sweeps as a chart: `python -m bench.chart bench/results.json docs/benchmark-sweeps.png`.

One panel per sweep in the results (by users, by envelope size): events/s on the left
axis, the worker's and Redis's CPU seconds per million events on the right, so a rate
that falls can be read against the cost per event that rose with it. Drawn with Agg, no
display needed; a point that timed out is drawn with the rate it had reached and marked.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import StrMethodFormatter

SWEEPS = (("by_users", "distinct users"), ("by_envelope_size", "events per envelope"))
PANEL_INCHES = (5.5, 4.2)
DPI = 100


def draw(result: dict[str, Any], out: Path) -> None:
    """Write the PNG of the sweeps in `result` (a `bench.ingest` result) to `out`."""
    sweeps = [(name, label) for name, label in SWEEPS if result.get(name)]
    if not sweeps:
        raise ValueError("the results hold no sweep (by_users, by_envelope_size) to draw")
    width, height = PANEL_INCHES
    figure = Figure(figsize=(width * len(sweeps), height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    late = set(result.get("timed_out", []))
    for axes, (name, label) in zip(figure.subplots(1, len(sweeps), squeeze=False)[0], sweeps, strict=True):
        lines = _panel(axes, name, label, result[name], result.get("sweep_events"), late)
    figure.legend(lines, [str(line.get_label()) for line in lines], loc="outside lower center", ncols=3)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, format="png")


def _panel(
    axes: Axes, name: str, label: str, points: dict[str, Any], events: int | None, late: set[str]
) -> list[Line2D]:
    keys = sorted(points, key=int)
    x = [int(k) for k in keys]
    rate = axes.plot(x, [_value(points[k]["events_per_s"]) for k in keys], "o-", color="C0", label="events/s")
    cpu = axes.twinx()
    worker = cpu.plot(
        x, [_value(points[k]["cpu_s_per_million"]) for k in keys], "s--", color="C1", label="worker CPU s/M"
    )
    server = cpu.plot(
        x,
        [_value(points[k]["redis_cpu_s_per_million"]) for k in keys],
        "^--",
        color="C3",
        label="Redis CPU s/M",
    )
    for k in keys:
        if f"{name}/{k}" in late:
            axes.annotate(
                "timed out",
                (int(k), points[k]["events_per_s"]),
                textcoords="offset points",
                xytext=(-6, 8),
                ha="right",
            )
    axes.set_xscale("log")
    axes.set_xticks(x, [f"{n:,}" for n in x])
    axes.minorticks_off()
    axes.set_xlabel(label)
    axes.set_ylabel("events/s")
    axes.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    cpu.set_ylabel("CPU s per million events")
    axes.set_ylim(bottom=0)
    cpu.set_ylim(bottom=0)
    axes.set_title(name + (f", {events:,} events per point" if events else ""))
    return rate + worker + server


def _value(value: float | None) -> float:
    return math.nan if value is None else float(value)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("results", type=Path, help="a bench.ingest result (bench/results.json)")
    parser.add_argument("out", type=Path, help="the PNG to write (docs/benchmark-sweeps.png)")
    args = parser.parse_args(argv)
    try:
        draw(json.loads(args.results.read_text()), args.out)
    except ValueError as exc:
        parser.exit(1, f"{args.results}: {exc}; run them with --phases by_users,by_envelope_size\n")


if __name__ == "__main__":
    main()
