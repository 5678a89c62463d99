"""Days as the product's operators count them: in the profile's time zone, not in UTC.

Every day boundary (cohorts, daily active users, retention day N, history days, interval
lifecycle) goes through one `Calendar`, so a product in Shanghai cuts its days at local
midnight. A day is a number: days since 1970-01-01 *in local time*, so day arithmetic stays
integer arithmetic and UTC's days are the same numbers as before (`ts // DAY_MS`).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from service.core.durations import DAY_MS

_EPOCH_DAY = date(1970, 1, 1).toordinal()
# Offsets change only at transitions, and every zone's transitions fall on a quarter hour,
# so the offset is constant over each quarter hour of UTC time and can be cached by it.
_QUARTER_MS = 900_000
_CACHE_LIMIT = 1 << 16


class TimeZoneError(ValueError):
    """A time zone name that is not an IANA name known to this system's tz database."""


class Calendar:
    """Local days of one IANA time zone; `Calendar("UTC")` is plain `ts // DAY_MS`."""

    __slots__ = ("_offsets", "_zone", "name")

    def __init__(self, name: object = "UTC") -> None:  # checked here, not by the caller's types
        if not isinstance(name, str) or not name or len(name) > 64:
            raise TimeZoneError(f"{name!r} is not a time zone name; write an IANA name like 'Asia/Shanghai'")
        try:
            zone = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise TimeZoneError(
                f"{name!r} is not a known IANA time zone; write e.g. 'UTC', 'Asia/Shanghai', 'Europe/Paris'"
            ) from exc
        self.name = name
        self._zone: ZoneInfo | None = None if name in ("UTC", "Etc/UTC") else zone
        self._offsets: dict[int, int] = {}

    @property
    def is_utc(self) -> bool:
        return self._zone is None

    def offset_ms(self, ts: int) -> int:
        """The zone's offset from UTC at `ts` (epoch ms), in ms."""
        if self._zone is None:
            return 0
        quarter = ts // _QUARTER_MS
        offset = self._offsets.get(quarter)
        if offset is None:
            if len(self._offsets) >= _CACHE_LIMIT:
                self._offsets.clear()
            moment = datetime.fromtimestamp(quarter * _QUARTER_MS / 1000, UTC).astimezone(self._zone)
            delta = moment.utcoffset() or timedelta(0)
            offset = self._offsets[quarter] = int(delta.total_seconds() * 1000)
        return offset

    def day(self, ts: int) -> int:
        """The local day of `ts` (epoch ms), as days since 1970-01-01."""
        if self._zone is None:
            return ts // DAY_MS
        return (ts + self.offset_ms(ts)) // DAY_MS

    def start_ms(self, day: int) -> int:
        """When local `day` begins (epoch ms); on a day starting in a DST gap, the first
        instant that exists."""
        if self._zone is None:
            return day * DAY_MS
        local = datetime.fromordinal(day + _EPOCH_DAY).replace(tzinfo=self._zone)
        start = int(local.timestamp() * 1000)
        # a midnight that does not exist (a DST gap at 00:00) resolves forward
        if self.day(start) == day:
            return start
        return start + DAY_MS - (start + self.offset_ms(start)) % DAY_MS

    @staticmethod
    def iso(day: int) -> str:
        """`YYYY-MM-DD` of a day number."""
        return date.fromordinal(day + _EPOCH_DAY).isoformat()

    @staticmethod
    def from_iso(text: str) -> int:
        """The day number of `YYYY-MM-DD`."""
        return date.fromisoformat(text).toordinal() - _EPOCH_DAY

    def __repr__(self) -> str:
        return f"Calendar({self.name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Calendar) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)


UTC_CALENDAR = Calendar("UTC")
