"""Local days: the one place day boundaries are worked out."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.core.calendar import Calendar, TimeZoneError
from service.core.durations import DAY_MS

ZONES = [
    "UTC",
    "Asia/Shanghai",
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",
    "America/Santiago",
]


def _ms(text: str, zone: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp() * 1000)


def test_utc_days_are_the_epoch_division() -> None:
    cal = Calendar()
    assert cal.is_utc
    assert cal.day(DAY_MS * 20000 + 5) == 20000
    assert cal.start_ms(20000) == 20000 * DAY_MS


def test_shanghai_days_begin_at_local_midnight_which_is_16h_utc() -> None:
    cal = Calendar("Asia/Shanghai")
    before = _ms("2026-03-01T23:59:59", "Asia/Shanghai")
    after = _ms("2026-03-02T00:00:00", "Asia/Shanghai")
    assert cal.day(after) == cal.day(before) + 1
    assert cal.iso(cal.day(after)) == "2026-03-02"
    assert cal.start_ms(cal.day(after)) == after
    assert Calendar().iso(Calendar().day(after)) == "2026-03-01"  # still the 1st in UTC


def test_new_york_days_across_the_dst_changes_are_23_and_25_hours() -> None:
    cal = Calendar("America/New_York")
    spring = Calendar.from_iso("2026-03-08")
    autumn = Calendar.from_iso("2026-11-01")
    assert cal.start_ms(spring + 1) - cal.start_ms(spring) == 23 * 3_600_000
    assert cal.start_ms(autumn + 1) - cal.start_ms(autumn) == 25 * 3_600_000
    assert cal.day(_ms("2026-03-08T03:30:00", "America/New_York")) == spring


def test_a_day_beginning_in_a_dst_gap_begins_at_its_first_instant() -> None:
    # Santiago moves its clocks forward at local midnight: 00:00 does not exist that day
    cal = Calendar("America/Santiago")
    for day in range(Calendar.from_iso("2026-01-01"), Calendar.from_iso("2027-01-01")):
        start = cal.start_ms(day)
        assert cal.day(start) == day
        assert cal.day(start - 1) == day - 1


@pytest.mark.parametrize("name", ["", "Mars/Olympus", "../etc/passwd", "x" * 100, 5])
def test_unknown_names_are_refused_with_what_to_write(name: object) -> None:
    with pytest.raises(TimeZoneError, match="IANA"):
        Calendar(name)  # type: ignore[arg-type]


@given(st.sampled_from(ZONES), st.integers(946_684_800_000, 4_102_444_800_000))
def test_every_instant_lies_in_its_day(zone: str, ts: int) -> None:
    cal = Calendar(zone)
    day = cal.day(ts)
    assert cal.start_ms(day) <= ts < cal.start_ms(day + 1)
    local = datetime.fromtimestamp(ts / 1000, ZoneInfo(zone))
    assert cal.iso(day) == local.date().isoformat()
