"""The fast paths of trigger times give exactly what the plain `datetime` formulation gives.

`rfc3339` formats CloudEvent times by arithmetic past a cached date, and `quiet_end` takes
the local minute from a day's cached UTC offset; both are checked against the direct
`datetime` computation, over many years and in zones whose offsets change at odd times
(half and quarter hours, one minute past the hour, 44 minutes 30 seconds).
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from service.core.cloudevents import rfc3339
from service.core.trigger_rules import QuietHours
from service.core.triggers import _zone, quiet_end

ZONES = [
    "UTC",
    "Asia/Shanghai",
    "America/New_York",
    "America/St_Johns",
    "America/Goose_Bay",
    "Asia/Gaza",
    "Asia/Kathmandu",
    "Australia/Lord_Howe",
    "Africa/Monrovia",
    "Pacific/Chatham",
    "Antarctica/Casey",
]
YEARS_1970_2040 = st.integers(0, 2_208_988_800_000)


def rfc3339_by_datetime(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def quiet_end_by_datetime(at: int, quiet: QuietHours) -> int | None:
    zone = _zone(quiet.zone)
    local = datetime.fromtimestamp(at / 1000, zone)
    minute = local.hour * 60 + local.minute
    if not quiet.contains(minute):
        return None
    day = local.date()
    if quiet.start > quiet.end and minute >= quiet.start:
        day += timedelta(days=1)
    end = datetime.combine(day, time(quiet.end // 60, quiet.end % 60), zone)
    return int(end.timestamp() * 1000)


@settings(max_examples=2000, deadline=None)
@given(st.integers(-2_000_000_000_000, 4_000_000_000_000))
def test_rfc3339_is_the_datetime_format(ms: int) -> None:
    assert rfc3339(ms) == rfc3339_by_datetime(ms)


def test_rfc3339_at_day_and_epoch_edges() -> None:
    for ms in (0, -1, 86_399_999, 86_400_000, 1_700_000_000_000, 951_782_400_000):  # 2000-02-29
        assert rfc3339(ms) == rfc3339_by_datetime(ms)
    assert rfc3339(951_782_400_123) == "2000-02-29T00:00:00.123Z"


@settings(max_examples=3000, deadline=None)
@given(
    YEARS_1970_2040,
    st.sampled_from(ZONES),
    st.integers(0, 1439),
    st.integers(0, 1439),
)
def test_quiet_end_is_the_datetime_computation(at: int, zone: str, start: int, end: int) -> None:
    if start == end:
        end = (end + 1) % 1440
    quiet = QuietHours(start, end, zone)
    assert quiet_end(at, quiet) == quiet_end_by_datetime(at, quiet)


def test_quiet_end_on_days_the_offset_changes() -> None:
    """Instants around transitions at odd times: the day's offset is not used on those days."""
    cases = [
        ("America/Goose_Bay", datetime(1987, 4, 5, 4, 1, tzinfo=UTC)),  # one minute past the hour
        ("Africa/Monrovia", datetime(1972, 1, 7, 0, 44, 30, tzinfo=UTC)),  # 44 min 30 s
        ("America/New_York", datetime(2026, 3, 8, 7, 0, tzinfo=UTC)),  # spring forward
        ("America/New_York", datetime(2026, 11, 1, 6, 0, tzinfo=UTC)),  # fall back
        ("Australia/Lord_Howe", datetime(2026, 4, 4, 15, 0, tzinfo=UTC)),  # a 30-minute shift
    ]
    for zone, moment in cases:
        base = int(moment.timestamp() * 1000)
        for delta_s in range(-7200, 7200, 60):
            at = base + delta_s * 1000
            for start, end in ((0, 1439), (22 * 60, 8 * 60), (60, 180)):
                quiet = QuietHours(start, end, zone)
                assert quiet_end(at, quiet) == quiet_end_by_datetime(at, quiet), (zone, at, start, end)
