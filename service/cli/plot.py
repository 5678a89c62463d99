"""Small plots without a plotting library: a bar chart for the terminal and a PNG line chart.

Enough to show a return curve (probability against log-spaced idle times) where the
service runs, with no extra dependency.
"""

from __future__ import annotations

import itertools
import struct
import zlib
from collections.abc import Sequence


def terminal_bars(
    labels: Sequence[str], values: Sequence[float | None], notes: Sequence[str], width: int = 40
) -> str:
    """One row per point: label, a bar for a value in [0, 1], the value and a note."""
    rows = []
    pad = max(len(label) for label in labels) if labels else 0
    for label, value, note in zip(labels, values, notes, strict=True):
        if value is None:
            rows.append(f"{label:>{pad}}  {'·' * width}    -   {note}")
            continue
        filled = round(value * width)
        rows.append(f"{label:>{pad}}  {'█' * filled}{'░' * (width - filled)}  {value:4.2f}  {note}")
    return "\n".join(rows)


def line_chart_png(
    values: Sequence[float | None], marks: Sequence[int] = (), width: int = 640, height: int = 320
) -> bytes:
    """A PNG of `values` (each in [0, 1]) as a polyline over evenly spaced x, with vertical marks."""
    margin = 24
    pixels = [[(255, 255, 255)] * width for _ in range(height)]

    def dot(x: int, y: int, color: tuple[int, int, int]) -> None:
        if 0 <= x < width and 0 <= y < height:
            pixels[y][x] = color

    def line(x0: int, y0: int, x1: int, y1: int, color: tuple[int, int, int]) -> None:
        steps = max(abs(x1 - x0), abs(y1 - y0), 1)
        for s in range(steps + 1):
            x = x0 + (x1 - x0) * s // steps
            y = y0 + (y1 - y0) * s // steps
            for dx in (0, 1):
                dot(x + dx, y, color)

    left, right, top, bottom = margin, width - margin, margin, height - margin
    grey, blue, red = (170, 170, 170), (31, 119, 180), (214, 39, 40)
    line(left, bottom, right, bottom, grey)
    line(left, top, left, bottom, grey)
    for level in (0.5, 0.2, 0.05):
        y = bottom - round(level * (bottom - top))
        for x in range(left, right, 6):
            dot(x, y, grey)
    n = max(len(values) - 1, 1)

    def xy(i: int, v: float) -> tuple[int, int]:
        return left + i * (right - left) // n, bottom - round(v * (bottom - top))

    for i in marks:
        x, _ = xy(i, 0)
        line(x, top, x, bottom, red)
    points = [(i, v) for i, v in enumerate(values) if v is not None]
    for (i0, v0), (i1, v1) in itertools.pairwise(points):
        line(*xy(i0, v0), *xy(i1, v1), blue)
    raw = b"".join(b"\x00" + bytes(c for px in row for c in px) for row in pixels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )
