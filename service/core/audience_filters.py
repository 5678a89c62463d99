"""Audience filters as values: parsed once (API query, profile `audiences:`), then planned.

A filter names lifecycle states, a channel, funnel stages reached or not, an RFM segment
and a window of when the user entered their current state. Times may be absolute, a local
day (`2026-11-16`: its local midnight in the profile's time zone), or relative to the clock
(`7d` = clock minus seven days), so a named audience such as "silent this week" keeps its
meaning as the clock moves. Nothing here imports the profile (the profile parses its
`audiences:` with this module); the calendar a day needs is passed when a bound is resolved.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson

from service.core.calendar import Calendar
from service.core.durations import DurationError, format_duration, parse_duration
from service.core.instants import iso_ms
from service.core.segments import SEGMENT_KEYS

STATE_NAMES = ("new", "retained", "silent", "churned", "dead")
FILTER_KEYS = ("state", "channel", "stage", "not_stage", "segment", "entered_since", "entered_before")
_CHANNEL = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class AudienceFilterError(ValueError):
    """A filter that cannot be answered; the message names the parameter and what is allowed."""


@dataclass(frozen=True, slots=True)
class TimeBound:
    """An instant (`at`, epoch ms), a local day (`day`, days since 1970-01-01: its first
    instant in the profile's time zone) or a duration before the clock (`ago`, ms)."""

    at: int | None = None
    ago: int | None = None
    day: int | None = None

    def resolve(self, now: int, calendar: Calendar) -> int:
        if self.at is not None:
            return self.at
        if self.day is not None:
            return calendar.start_ms(self.day)
        return now - (self.ago or 0)

    def key(self) -> tuple[int | None, ...]:
        """What a fingerprint hashes; a bound without a day hashes as it did before days."""
        return (self.at, self.ago) if self.day is None else (self.at, self.ago, self.day)

    def to_json(self) -> str:
        if self.at is not None:
            return iso_ms(self.at)
        if self.day is not None:
            return Calendar.iso(self.day)
        return format_duration(self.ago or 0)


@dataclass(frozen=True, slots=True)
class AudienceFilter:
    """`states` empty: every state. `channel` as stored (`-`: users seen without one).
    `stage` / `not_stage` are funnel stage indexes; `entered_*` bound `entered_at` as
    `entered_since <= entered_at < entered_before`."""

    states: frozenset[str] = frozenset()
    channel: str | None = None
    stage: int | None = None
    not_stage: int | None = None
    segment: str | None = None
    entered_since: TimeBound | None = None
    entered_before: TimeBound | None = None

    def to_json(self, stage_names: Sequence[str]) -> dict[str, Any]:
        """The filter as its parameters (the form `parse_filter` reads), absent ones omitted."""
        out: dict[str, Any] = {}
        if self.states:
            out["state"] = [s for s in STATE_NAMES if s in self.states]
        if self.channel is not None:
            out["channel"] = self.channel
        if self.stage is not None:
            out["stage"] = stage_names[self.stage]
        if self.not_stage is not None:
            out["not_stage"] = stage_names[self.not_stage]
        if self.segment is not None:
            out["segment"] = self.segment
        if self.entered_since is not None:
            out["entered_since"] = self.entered_since.to_json()
        if self.entered_before is not None:
            out["entered_before"] = self.entered_before.to_json()
        return out

    def fingerprint(self) -> str:
        """A short stable digest, to bind a cursor to the filter it was made for."""
        doc = [
            sorted(self.states),
            self.channel,
            self.stage,
            self.not_stage,
            self.segment,
            self.entered_since and self.entered_since.key(),
            self.entered_before and self.entered_before.key(),
        ]
        return hashlib.blake2b(orjson.dumps(doc), digest_size=6).hexdigest()


@dataclass(frozen=True, slots=True)
class Audience:
    """A named audience of the profile: operators export or publish it by name."""

    name: str
    description: str
    filter: AudienceFilter


def parse_time_bound(value: Any, field: str) -> TimeBound:
    """An ISO-8601 instant with an offset (or `Z`), a day `YYYY-MM-DD` (its local midnight),
    or a duration (`7d`, `12h`) before the clock."""
    if isinstance(value, date):  # YAML reads an unquoted timestamp or day as a datetime or date
        value = value.isoformat()
    if isinstance(value, str):
        try:
            return TimeBound(ago=parse_duration(value))
        except DurationError:
            pass
        if _DAY.fullmatch(value.strip()):
            try:
                return TimeBound(day=Calendar.from_iso(value.strip()))
            except ValueError as exc:
                raise AudienceFilterError(f"{field}: {value!r} is not a day of the calendar") from exc
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is not None:
            if parsed.tzinfo is None:
                raise AudienceFilterError(
                    f"{field}: {value!r} needs a UTC offset, e.g. 2026-11-16T00:00:00Z "
                    "(or give the day alone, 2026-11-16, for its local midnight)"
                )
            return TimeBound(at=int(parsed.timestamp() * 1000))
    raise AudienceFilterError(
        f"{field}: {value!r} is neither an ISO-8601 instant (2026-11-16T00:00:00Z), a day (2026-11-16) "
        "nor a duration (7d, 12h)"
    )


def _one(value: Any, field: str) -> Any:
    if isinstance(value, list | tuple):
        if len(value) != 1:
            raise AudienceFilterError(f"{field}: give one value, not {len(value)}")
        return value[0]
    return value


def parse_filter(raw: Mapping[str, Any], stage_names: Sequence[str]) -> AudienceFilter:
    """Validate filter parameters (query parameters or a profile entry) into a filter.

    `state` may be a string, a comma-separated string or a list; the others one value each.
    """
    unknown = sorted(str(k) for k in set(raw) - set(FILTER_KEYS))
    if unknown:
        raise AudienceFilterError(
            f"unknown filter(s) {', '.join(unknown)}; allowed: {', '.join(FILTER_KEYS)}"
        )
    states: set[str] = set()
    given = raw.get("state")
    for item in [given] if isinstance(given, str) else list(given or []):
        for name in str(item).split(","):
            if name.strip() not in STATE_NAMES:
                raise AudienceFilterError(f"state: {name!r} is not one of {', '.join(STATE_NAMES)}")
            states.add(name.strip())
    channel = _one(raw.get("channel"), "channel")
    if channel is not None:
        if not isinstance(channel, str) or not _CHANNEL.fullmatch(channel):
            raise AudienceFilterError(f"channel: {channel!r} must match {_CHANNEL.pattern} ('-' for none)")
        channel = "-" if channel in ("-", "none") else channel

    def stage_index(field: str) -> int | None:
        name = _one(raw.get(field), field)
        if name is None:
            return None
        if name not in stage_names:
            raise AudienceFilterError(
                f"{field}: {name!r} is not a funnel stage; stages: {', '.join(stage_names)}"
            )
        return list(stage_names).index(name)

    segment = _one(raw.get("segment"), "segment")
    if segment is not None and segment not in SEGMENT_KEYS:
        raise AudienceFilterError(f"segment: {segment!r} is not one of {', '.join(SEGMENT_KEYS)}")
    since, before = (_one(raw.get(f), f) for f in ("entered_since", "entered_before"))
    return AudienceFilter(
        states=frozenset(states),
        channel=channel,
        stage=stage_index("stage"),
        not_stage=stage_index("not_stage"),
        segment=segment,
        entered_since=None if since is None else parse_time_bound(since, "entered_since"),
        entered_before=None if before is None else parse_time_bound(before, "entered_before"),
    )


def parse_audiences(section: Any, stage_names: Sequence[str], source: str) -> tuple[Audience, ...]:
    """The profile's `audiences:` mapping: name -> {description, <filters>}."""
    if section is None:
        return ()
    if not isinstance(section, Mapping):
        raise AudienceFilterError(f"{source}: audiences: expected a mapping of name -> filters")
    out: list[Audience] = []
    for name, body in section.items():
        where = f"{source}: audiences.{name}"
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise AudienceFilterError(f"{where}: the name must match {_NAME.pattern}")
        if not isinstance(body, Mapping):
            raise AudienceFilterError(f"{where}: expected a mapping of filters")
        filters = {k: v for k, v in body.items() if k != "description"}
        try:
            parsed = parse_filter(filters, stage_names)
        except AudienceFilterError as exc:
            raise AudienceFilterError(f"{where}: {exc}") from exc
        out.append(Audience(name, str(body.get("description", "")), parsed))
    return tuple(out)
