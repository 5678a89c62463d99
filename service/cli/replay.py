"""Reading event histories from files: JSON Lines and CSV, optionally gzip-compressed.

Each record comes back with its line number and its raw bytes, and a bad one as a
reason instead of an exception, so a replay can publish the good lines and report the
bad ones precisely. Validation against the canonical schema is the caller's job
(`validate_event`); this module only turns lines into candidate event objects.
"""

from __future__ import annotations

import csv
import gzip
import math
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple, cast

import orjson

CSV_FIELDS = ("event_id", "user_id", "type", "ts", "channel", "amount", "properties")
_REQUIRED = ("event_id", "user_id", "type", "ts")
_GZIP_MAGIC = b"\x1f\x8b"
_BOM = b"\xef\xbb\xbf"


class Line(NamedTuple):
    """One record of a history file: a decoded object, or why it could not be decoded."""

    number: int  # 1-based; for a CSV record spanning lines, its first line
    event: dict[str, Any] | None
    error: str | None
    raw: bytes


def read_events(path: str | Path) -> Iterator[Line]:
    """Records of a `.csv` file (by name) or a JSON Lines file (`.jsonl`, `.ndjson`, `.json`, any other).

    Gzip is recognised by its magic bytes, so `events.jsonl.gz` and a compressed file
    without the suffix both work; the format is judged from the name without `.gz`. A
    truncated or corrupt gzip stream ends the file with one error line.
    """
    path = Path(path)
    kind = Path(path.stem).suffix if path.suffix == ".gz" else path.suffix
    with open(path, "rb") as plain:
        compressed = plain.read(2) == _GZIP_MAGIC
        plain.seek(0)
        stream = cast(IO[bytes], gzip.GzipFile(fileobj=plain, mode="rb")) if compressed else plain
        lines = _Lines(stream)
        try:
            yield from (_csv_records(lines) if kind.lower() == ".csv" else _json_records(lines))
        except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
            yield Line(lines.number + 1, None, f"unreadable compressed data: {exc}", b"")


class _Lines:
    """Raw lines with their numbers; a leading UTF-8 byte order mark is dropped."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.number = 0

    def __iter__(self) -> Iterator[bytes]:
        for line in self._stream:
            self.number += 1
            if self.number == 1 and line.startswith(_BOM):
                line = line[len(_BOM) :]
            yield line


def _json_records(lines: _Lines) -> Iterator[Line]:
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield Line(lines.number, None, f"not JSON: {exc}", line)
            continue
        if isinstance(doc, dict):
            yield Line(lines.number, doc, None, line)
        else:
            yield Line(
                lines.number, None, f"a JSON {type(doc).__name__}, expected one event object per line", line
            )


def _csv_records(lines: _Lines) -> Iterator[Line]:
    """CSV with a header row naming canonical fields; empty cells are absent fields."""
    consumed: list[bytes] = []  # the raw lines the csv reader took for the current record
    bad_text: list[int] = []

    def text() -> Iterator[str]:
        for line in lines:
            consumed.append(line)
            try:
                yield line.decode("utf-8")
            except UnicodeDecodeError:
                bad_text.append(lines.number)
                yield ""

    reader = csv.reader(text())
    header = next(reader, None)
    if header is None:
        return
    columns = [h.strip() for h in header]
    problem = _header_problem(columns)
    if problem:
        yield Line(1, None, problem, b"".join(consumed).rstrip(b"\r\n"))
        return
    consumed.clear()
    while True:
        error: str | None = None
        try:
            row = next(reader, None)
        except csv.Error as exc:  # e.g. a cell over the csv module's size limit
            row, error = [], f"unreadable CSV: {exc}"
        if row is None:
            return
        raw = b"".join(consumed).rstrip(b"\r\n")
        number = lines.number - len(consumed) + 1
        consumed.clear()
        if bad_text:
            bad_text.clear()
            yield Line(number, None, "not UTF-8 text", raw)
        elif error:
            yield Line(number, None, error, raw)
        elif not row or row == [""]:
            continue
        elif len(row) != len(columns):
            yield Line(number, None, f"{len(row)} cells, but the header names {len(columns)} columns", raw)
        else:
            doc, error = _csv_event(columns, row)
            yield Line(number, doc, error, raw)


def _header_problem(columns: list[str]) -> str | None:
    unknown = [c for c in columns if c not in CSV_FIELDS]
    if unknown:
        names = ", ".join(unknown[:5])
        return f"CSV header: unknown column(s) {names}; canonical fields: {', '.join(CSV_FIELDS)}"
    missing = [c for c in _REQUIRED if c not in columns]
    if missing:
        return f"CSV header: missing column(s) {', '.join(missing)}"
    if len(set(columns)) != len(columns):
        return "CSV header: a column is named twice"
    return None


def _csv_event(columns: list[str], row: list[str]) -> tuple[dict[str, Any] | None, str | None]:
    doc: dict[str, Any] = {}
    for field, cell in zip(columns, row, strict=True):
        value = cell.strip()
        if not value:
            continue
        if field == "ts":
            doc[field] = _ts(value)
        elif field == "amount":
            amount = _number(value)
            if amount is None:
                return None, f"amount {value[:40]!r} is not a number"
            doc[field] = amount
        elif field == "properties":
            try:
                props = orjson.loads(value)
            except orjson.JSONDecodeError:
                return None, "properties is not valid JSON"
            if not isinstance(props, dict):
                return None, "properties is not a JSON object"
            doc[field] = props
        else:
            doc[field] = value
    return doc, None


def _ts(text: str) -> int | float | str:
    """Epoch milliseconds as an int; anything not numeric stays text (RFC 3339, or rejected later)."""
    if text.isdigit():
        return int(text)
    number = _number(text)
    if number is None:
        return text
    return int(number) if math.isfinite(number) else number


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value == value else None  # NaN is not an amount


def write_jsonl(path: str | Path, events: Iterable[dict[str, Any]]) -> int:
    """Write events as JSON Lines (gzip when the name ends in `.gz`); returns the count."""
    path = Path(path)
    count = 0
    with gzip.open(path, "wb", compresslevel=5) if path.suffix == ".gz" else open(path, "wb") as out:
        buffer: list[bytes] = []
        for event in events:
            buffer.append(orjson.dumps(event))
            count += 1
            if len(buffer) >= 4096:
                out.write(b"\n".join(buffer) + b"\n")
                buffer.clear()
        if buffer:
            out.write(b"\n".join(buffer) + b"\n")
    return count
