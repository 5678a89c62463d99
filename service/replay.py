"""Reading event histories from files: JSON Lines and CSV, optionally gzip-compressed.

Each line comes back with its number, so a bad line can be reported precisely while
the good ones are published.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, cast

import orjson

Line = tuple[int, dict[str, Any] | None, str | None, bytes]
"""(line number, decoded event or None, reason it is unreadable or None, raw bytes)"""


def _open(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return cast(IO[bytes], gzip.open(path, "rb"))
    return open(path, "rb")


def read_events(path: str | Path) -> Iterator[Line]:
    """Events of a `.jsonl`/`.ndjson`/`.json` (one object per line) or `.csv` file."""
    path = Path(path)
    kind = Path(path.stem).suffix if path.suffix == ".gz" else path.suffix
    with _open(path) as raw:
        if kind == ".csv":
            yield from _csv_lines(raw)
        else:
            yield from _json_lines(raw)


def _json_lines(raw: IO[bytes]) -> Iterator[Line]:
    for number, line in enumerate(raw, start=1):
        line = line.strip()
        if not line:
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield number, None, f"not JSON: {exc}", line
            continue
        if not isinstance(doc, dict):
            yield number, None, "not a JSON object", line
        else:
            yield number, doc, None, line


_NUMERIC = ("ts", "amount")


def _csv_lines(raw: IO[bytes]) -> Iterator[Line]:
    reader = csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8", newline=""))
    for row in reader:
        number = reader.line_num
        line = ",".join(v or "" for v in row.values() if isinstance(v, str)).encode()
        doc: dict[str, Any] = {}
        error = None
        for field, value in row.items():
            if field is None or value is None or value == "":
                continue
            if field in _NUMERIC:
                try:
                    doc[field] = int(value) if value.lstrip("-").isdigit() else float(value)
                except ValueError:
                    if field == "ts":
                        doc[field] = value  # an RFC 3339 string
                    else:
                        error = f"{field} {value!r} is not a number"
            elif field == "properties":
                try:
                    doc[field] = orjson.loads(value)
                except orjson.JSONDecodeError:
                    error = "properties is not a JSON object"
            else:
                doc[field] = value
        yield number, (None if error else doc), error, line


def write_jsonl(path: str | Path, events: Iterable[dict[str, Any]]) -> int:
    """Write events as JSON Lines (gzip when the name ends in `.gz`); returns the count."""
    path = Path(path)
    count = 0
    with gzip.open(path, "wb") if path.suffix == ".gz" else open(path, "wb") as out:
        for event in events:
            out.write(orjson.dumps(event) + b"\n")
            count += 1
    return count
