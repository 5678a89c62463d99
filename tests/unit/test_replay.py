"""Reading history files: JSON Lines and CSV, plain or gzip; bad records come back with their line numbers."""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path
from typing import Any

import orjson
import pytest

from service.cli.replay import CSV_FIELDS, read_events, write_jsonl
from service.core.events import validate_event
from service.core.profile import load_profile
from service.dev.generator import generate

T0 = 1_700_000_000_000
HEADER = ",".join(CSV_FIELDS)


def sample() -> list[dict[str, Any]]:
    return list(generate(users=200, start_ms=T0, days=60, seed=4, profile=load_profile("insurance")))


def good(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in read_events(path):
        assert line.error is None, line
        assert line.event is not None
        out.append(line.event)
    return out


@pytest.mark.parametrize("name", ["events.jsonl", "events.ndjson", "events.json", "events.jsonl.gz"])
def test_jsonl_round_trips_through_write_jsonl(tmp_path: Path, name: str) -> None:
    events = sample()
    path = tmp_path / name
    assert write_jsonl(path, events) == len(events)
    assert good(path) == events
    assert [line.number for line in read_events(path)] == list(range(1, len(events) + 1))
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")


def test_gzip_is_recognised_by_its_bytes_not_only_by_the_name(tmp_path: Path) -> None:
    events = sample()[:50]
    path = tmp_path / "compressed-without-suffix.jsonl"
    path.write_bytes(gzip.compress(b"\n".join(orjson.dumps(e) for e in events)))
    assert good(path) == events


def test_bad_json_lines_are_reported_with_their_numbers_and_the_rest_is_read(tmp_path: Path) -> None:
    ok = {"event_id": "e1", "user_id": "u1", "type": "visit", "ts": T0}
    lines = [
        orjson.dumps(ok),
        b"",
        b"{not json",
        b"[1, 2]",
        b"  ",
        b'"text"',
        orjson.dumps({**ok, "event_id": "e2"}),
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(
        b"\xef\xbb\xbf" + b"\n".join(lines) + b"\n"
    )  # with a byte order mark, as some editors write
    got = list(read_events(path))
    assert [(line.number, line.error is None) for line in got] == [
        (1, True),
        (3, False),
        (4, False),
        (6, False),
        (7, True),
    ]
    assert got[1].error is not None and got[1].error.startswith("not JSON")
    assert got[1].raw == b"{not json"
    assert got[2].error == "a JSON list, expected one event object per line"
    assert [line.event["event_id"] for line in got if line.event] == ["e1", "e2"]


def test_a_truncated_gzip_file_ends_with_an_error_after_the_lines_it_could_read(tmp_path: Path) -> None:
    events = sample()
    data = gzip.compress(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    got = list(read_events(path))
    assert got[-1].error is not None and "compressed" in got[-1].error
    readable = [line for line in got[:-1] if line.event is not None]
    assert 0 < len(readable) < len(events)
    assert got[-1].number > readable[-1].number


def test_csv_cells_become_canonical_fields(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    path.write_text(
        HEADER + "\n"
        "e1,u1,visit,1700000000000,ads,,\n"
        'e2,u1,order,2024-01-01T00:00:00Z,,12.5,"{""policy_id"": ""p1"", ""policy_end"": 1735689600000}"\n'
        "e3,u2,order,1.7e12,,7,\n"
        "e4,u2,visit,1700000000001,,,\n",
        encoding="utf-8",
    )
    assert good(path) == [
        {"event_id": "e1", "user_id": "u1", "type": "visit", "ts": T0, "channel": "ads"},
        {
            "event_id": "e2",
            "user_id": "u1",
            "type": "order",
            "ts": "2024-01-01T00:00:00Z",
            "amount": 12.5,
            "properties": {"policy_id": "p1", "policy_end": 1735689600000},
        },
        {"event_id": "e3", "user_id": "u2", "type": "order", "ts": T0, "amount": 7.0},
        {"event_id": "e4", "user_id": "u2", "type": "visit", "ts": T0 + 1},
    ]
    assert isinstance(good(path)[0]["ts"], int)


def test_csv_columns_may_come_in_any_order_and_optional_ones_may_be_left_out(tmp_path: Path) -> None:
    path = tmp_path / "few.csv"
    path.write_text("ts,type,user_id,event_id\r\n1700000000000,visit,u1,e1\r\n", encoding="utf-8-sig")
    assert good(path) == [{"ts": T0, "type": "visit", "user_id": "u1", "event_id": "e1"}]


def test_bad_csv_records_are_reported_with_their_numbers(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(
        (HEADER + "\n").encode()
        + b"e1,u1,visit,1700000000000,,,\n"  # 2 ok
        + b"e2,u1,order,1700000000000,,abc,\n"  # 3 amount
        + b"\n"  # 4 blank: skipped
        + b"e3,u1\n"  # 5 too few cells
        + b'e4,u1,visit,1700000000000,,,"[1]"\n'  # 6 properties not an object
        + b'e5,u1,visit,1700000000000,,,"{""a"":\n1}"\n'  # 7-8 a quoted cell over two lines: ok
        + b"e6,u1,visit,1700000000000,,,{oops\n"  # 9 properties not JSON
        + b"e7,u\xff,visit,1700000000000,,,\n"  # 10 not UTF-8
        + b"e8,u1,visit,1700000000002,,,\n"  # 11 ok
    )
    got = [(line.number, line.error) for line in read_events(path)]
    assert got == [
        (2, None),
        (3, "amount 'abc' is not a number"),
        (5, "2 cells, but the header names 7 columns"),
        (6, "properties is not a JSON object"),
        (7, None),
        (9, "properties is not valid JSON"),
        (10, "not UTF-8 text"),
        (11, None),
    ]
    raws = {line.number: line.raw for line in read_events(path)}
    assert raws[3] == b"e2,u1,order,1700000000000,,abc,"
    assert raws[7] == b'e5,u1,visit,1700000000000,,,"{""a"":\n1}"'


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("event_id,user_id,type,ts,colour", "unknown column(s) colour"),
        ("event_id,user_id,ts", "missing column(s) type"),
        ("event_id,user_id,type,ts,ts", "named twice"),
    ],
)
def test_a_bad_csv_header_is_one_error_on_line_1(tmp_path: Path, header: str, reason: str) -> None:
    path = tmp_path / "header.csv"
    path.write_text(header + "\ne1,u1,visit,1700000000000,x\n")
    got = list(read_events(path))
    assert len(got) == 1 and got[0].number == 1 and got[0].error is not None and reason in got[0].error


def test_generated_events_round_trip_through_gzip_csv(tmp_path: Path) -> None:
    events = sample()
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for ev in events:
        row = [ev.get(f, "") for f in CSV_FIELDS[:6]]
        writer.writerow([*row, orjson.dumps(ev["properties"]).decode() if "properties" in ev else ""])
    path = tmp_path / "history.csv.gz"
    path.write_bytes(gzip.compress(text.getvalue().encode()))
    decoded = [validate_event(doc) for doc in good(path)]
    assert decoded == [validate_event(ev) for ev in events]


def test_an_empty_file_has_no_records(tmp_path: Path) -> None:
    for name in ("empty.csv", "empty.jsonl"):
        (tmp_path / name).write_bytes(b"")
        assert list(read_events(tmp_path / name)) == []
