"""The pure parts of the console's endpoints: which days a history shows, and lag."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from service.core.calendar import Calendar
from service.core.history import KEEP_DAYS, day_of, expired, series, snapshot, window
from service.core.ops import consumer_lag, ops_document

COUNTS = {"new": 1, "retained": 2, "silent": 3, "churned": 4, "dead": 5}


def test_day_of_is_the_local_day_of_the_profiles_time_zone() -> None:
    utc, shanghai = Calendar("UTC"), Calendar("Asia/Shanghai")
    assert day_of(1_700_000_000_000, utc) == "2023-11-14"  # 22:13:20Z
    assert day_of(1_700_006_400_000, utc) == "2023-11-15"  # 00:00:00Z
    assert day_of(1_700_000_000_000, shanghai) == "2023-11-15"  # 06:13:20 in Shanghai
    assert day_of(1_699_977_600_000, shanghai) == "2023-11-15"  # 16:00Z: Shanghai's midnight
    assert day_of(1_699_977_599_999, shanghai) == "2023-11-14"


def test_window_ends_today_oldest_first_across_a_month_end() -> None:
    assert window("2024-03-02", 4) == ["2024-02-28", "2024-02-29", "2024-03-01", "2024-03-02"]
    assert window("2024-03-02", 1) == ["2024-03-02"]


def test_series_leaves_out_unrecorded_days_and_uses_the_live_answer_for_today() -> None:
    past = {"as_of": 10, "total": 15, "counts": COUNTS}
    live = {"as_of": 99, "total": 16, "counts": {**COUNTS, "new": 2}, "channel": None}
    stored = {"2024-03-01": snapshot(past), "2024-03-02": snapshot({**past, "total": 0})}
    days = series(stored, "2024-03-02", 5, live)
    assert days == [
        {"day": "2024-03-01", "as_of": 10, "total": 15, "counts": COUNTS},
        {"day": "2024-03-02", "as_of": 99, "total": 16, "counts": live["counts"]},
    ]
    assert series({}, "2024-03-02", 3, live) == days[1:]


def test_snapshot_keeps_only_what_a_day_needs() -> None:
    body = {"as_of": 1, "total": 15, "counts": COUNTS, "channel": None}
    assert orjson.loads(snapshot(body)) == {"as_of": 1, "total": 15, "counts": COUNTS}


def test_only_days_beyond_what_a_request_may_ask_expire() -> None:
    kept = window("2024-06-30", KEEP_DAYS)
    assert expired([*kept, "2024-01-01", "2023-12-31"], "2024-06-30") == ["2024-01-01", "2023-12-31"]


@given(
    st.dictionaries(st.integers(0, 7), st.integers(0, 10**9)),
    st.dictionaries(st.integers(0, 7), st.integers(-1, 10**9)),
)
def test_lag_is_what_the_topic_holds_beyond_the_applied_offset_never_negative(
    ends: dict[int, int], applied: dict[int, int]
) -> None:
    lag = consumer_lag(ends, applied)
    assert list(lag) == sorted(ends)
    for p, n in lag.items():
        assert n == max(0, ends[p] - applied.get(p, -1) - 1)


def test_ops_document_reads_the_counters_and_says_when_the_broker_is_away() -> None:
    totals = {"rejected": 3, "applied": 20, "duplicates": 1, "users|ads": 9}
    body = ops_document(totals, {0: 9, 1: -1}, {0: 1234}, {0: 12, 1: 2}, outbox_pending=4)
    assert body["dlq_events"] == 3 and body["events_applied"] == 20 and body["misrouted"] == 0
    assert body["lag"] == {"total": 4, "partitions": {"0": 2, "1": 2}}
    assert body["last_commit_ms"] == 1234 and body["kafka_error"] is None
    away = ops_document(totals, {0: 9}, {}, None, 0, "KafkaConnectionError")
    assert away["lag"] is None and away["kafka_error"] == "KafkaConnectionError"
    assert away["last_commit_ms"] is None
