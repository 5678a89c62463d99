"""Profiles: the lifecycle thresholds, activity types and core path funnel of one product.

A low-frequency insurance product and a daily app need very different thresholds, so
they are data, not code. Built-in profiles live in `service/profiles/*.yaml`; a user
profile is a YAML or TOML file of the same shape. Every validation error names the
field it is about, because a bad profile must fail at start-up, not mid-stream.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from service.core.audience_filters import Audience, AudienceFilterError, parse_audiences
from service.core.calendar import UTC_CALENDAR, Calendar, TimeZoneError
from service.core.durations import DurationError, parse_duration
from service.core.funnel_rules import EVENT_TYPE as _EVENT_TYPE
from service.core.funnel_rules import NAME as _NAME
from service.core.funnel_rules import FunnelRulesError, NamedFunnel, parse_funnels
from service.core.funnel_rules import FunnelStage as FunnelStage  # where callers have always found it
from service.core.lifecycle import Thresholds, ThresholdsError, idle_thresholds, validate_thresholds
from service.core.outcome_reports import GenericReports, parse_generic
from service.core.segment import DEFAULT_EVENT_MAP
from service.core.traits import parse_trait_names
from service.core.trigger_rules import TriggerRules, TriggerRulesError, parse_trigger_rules

_TOP_LEVEL = {
    "name",
    "description",
    "lifecycle",
    "activity_types",
    "revenue_types",
    "funnel",
    "funnels",
    "retention_days",
    "rfm",
    "channel_quality",
    "triggers",
    "audiences",
    "event_map",
    "non_activity_types",
    "outcome_reports",
    "traits",
    "time_zone",
}
_LIFECYCLE_KEYS = ("new_window", "silent_after", "churn_after", "dead_after")


class ProfileError(ValueError):
    """A profile that cannot be used; the message names the offending field."""


@dataclass(frozen=True, slots=True)
class Rfm:
    """RFM scoring: recent if idle < `recency`; frequent with `frequency` orders; valuable (high
    value) with `monetary` revenue."""

    recency: int = 30 * 86_400_000
    frequency: int = 2
    monetary: float = 500.0


QUALITY_METRICS = ("retention", "conversion", "revenue_per_user", "ltv_cac")


@dataclass(frozen=True, slots=True)
class Profile:
    """Everything product-specific the domain rules need."""

    name: str
    thresholds: Thresholds
    funnel: tuple[FunnelStage, ...]
    activity_types: frozenset[str] | None  # None: every event type is activity
    revenue_types: frozenset[str]
    description: str = ""
    retention_days: tuple[int, ...] = (1, 7, 30)
    rfm: Rfm = Rfm()
    quality_weights: tuple[tuple[str, float], ...] = (
        ("retention", 0.3),
        ("conversion", 0.3),
        ("revenue_per_user", 0.2),
        ("ltv_cac", 0.2),
    )
    triggers: TriggerRules = field(default_factory=TriggerRules)
    audiences: tuple[Audience, ...] = ()
    # Tracking-spec event names (Segment, RudderStack) onto this profile's event types.
    event_map: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_EVENT_MAP), hash=False)

    # Without a list of activity types every type is activity but these: messages about a
    # user's identity (who they are, which ids are theirs) say nothing of their engagement.
    non_activity_types: frozenset[str] = frozenset({"identify", "alias", "group"})
    # Delivery reports of messaging vendors other than the built-in ones (SendGrid, Mailgun).
    outcome_reports: Mapping[str, GenericReports] = field(default_factory=dict, hash=False)
    # identify traits kept on the user (service.core.traits)
    traits: frozenset[str] = frozenset()
    # where the product's days begin and end (`time_zone`, an IANA name; UTC by default)
    calendar: Calendar = UTC_CALENDAR
    # the named funnels besides the core path (`funnels:`; service.core.named_funnels)
    funnels: tuple[NamedFunnel, ...] = ()

    def is_activity(self, event_type: str) -> bool:
        if self.activity_types is None:
            return event_type not in self.non_activity_types
        return event_type in self.activity_types

    @property
    def funnel_events(self) -> frozenset[str]:
        """Event types whose occurrences the funnel counts per user."""
        return frozenset(stage.event for stage in self.funnel)

    @property
    def named_funnel_events(self) -> frozenset[str]:
        """Event types whose first times the named funnels keep per user."""
        return frozenset(step.event for f in self.funnels for step in f.steps)


BUILTIN_PROFILES = ("insurance", "fintech", "daily_app")


def load_profile(spec: str) -> Profile:
    """A built-in profile by name, or a `.yaml`/`.yml`/`.toml` file by path."""
    if spec in BUILTIN_PROFILES:
        text = resources.files("service").joinpath("profiles", f"{spec}.yaml").read_text()
        return parse_profile(yaml.safe_load(text), source=f"built-in profile {spec!r}")
    path = Path(spec)
    if not path.is_file():
        raise ProfileError(
            f"profile {spec!r} is neither a built-in ({', '.join(BUILTIN_PROFILES)}) nor an existing file"
        )
    raw_text = path.read_text()
    try:
        data = tomllib.loads(raw_text) if path.suffix == ".toml" else yaml.safe_load(raw_text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise ProfileError(f"profile {spec}: not valid {path.suffix or 'YAML'}: {exc}") from exc
    return parse_profile(data, source=f"profile {spec}")


def parse_profile(data: Any, *, source: str = "profile") -> Profile:
    """Validate a decoded profile document into a `Profile`."""
    if not isinstance(data, Mapping):
        raise ProfileError(f"{source}: expected a mapping at the top level")
    unknown = sorted(str(k) for k in set(data) - _TOP_LEVEL)
    if unknown:
        raise ProfileError(
            f"{source}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_TOP_LEVEL))}"
        )
    name = data.get("name", "custom")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ProfileError(f"{source}: name: {name!r} must match {_NAME.pattern}")
    thresholds = _thresholds(data.get("lifecycle"), source)
    try:
        triggers = parse_trigger_rules(data.get("triggers"), source, idle_thresholds(thresholds))
    except TriggerRulesError as exc:
        raise ProfileError(str(exc)) from exc
    try:
        funnel, funnels = parse_funnels(data.get("funnel"), data.get("funnels"), source)
    except FunnelRulesError as exc:
        raise ProfileError(str(exc)) from exc
    try:
        outcome_reports = parse_generic(data.get("outcome_reports"), source)
        traits = parse_trait_names(data.get("traits"), source)
    except ValueError as exc:
        raise ProfileError(str(exc)) from exc
    try:
        calendar = Calendar(data.get("time_zone", "UTC"))
    except TimeZoneError as exc:
        raise ProfileError(f"{source}: time_zone: {exc}") from exc
    try:
        audiences = parse_audiences(data.get("audiences"), [s.name for s in funnel], source)
    except AudienceFilterError as exc:
        raise ProfileError(str(exc)) from exc
    return Profile(
        name=name,
        thresholds=thresholds,
        triggers=triggers,
        audiences=audiences,
        funnel=funnel,
        funnels=funnels,
        activity_types=_type_set(data.get("activity_types"), "activity_types", source),
        revenue_types=_type_set(data.get("revenue_types", ["order", "renew"]), "revenue_types", source)
        or frozenset(),
        description=str(data.get("description", "")),
        retention_days=_retention_days(data.get("retention_days", [1, 7, 30]), source),
        rfm=_rfm(data.get("rfm", {}), source),
        event_map=_event_map(data.get("event_map"), source),
        non_activity_types=_type_set(
            data.get("non_activity_types", ["identify", "alias", "group"]), "non_activity_types", source
        )
        or frozenset(),
        outcome_reports=outcome_reports,
        traits=traits,
        calendar=calendar,
        **_quality(data.get("channel_quality"), source),
    )


def _thresholds(section: Any, source: str) -> Thresholds:
    if not isinstance(section, Mapping):
        raise ProfileError(f"{source}: lifecycle: expected a mapping with {', '.join(_LIFECYCLE_KEYS)}")
    unknown = sorted(str(k) for k in set(section) - set(_LIFECYCLE_KEYS))
    if unknown:
        raise ProfileError(f"{source}: lifecycle.{unknown[0]}: unknown field")
    values: dict[str, int] = {}
    for key in _LIFECYCLE_KEYS:
        if key not in section:
            raise ProfileError(f"{source}: lifecycle.{key}: missing (a duration such as '30d')")
        try:
            values[key] = parse_duration(section[key])
        except DurationError as exc:
            raise ProfileError(f"{source}: lifecycle.{key}: {exc}") from exc
    try:
        return validate_thresholds(Thresholds(**values))
    except ThresholdsError as exc:
        raise ProfileError(f"{source}: lifecycle.{exc}") from exc


def _rfm(section: Any, source: str) -> Rfm:
    if not isinstance(section, Mapping):
        raise ProfileError(f"{source}: rfm: expected a mapping with recency, frequency, monetary")
    unknown = sorted(str(k) for k in set(section) - {"recency", "frequency", "monetary"})
    if unknown:
        raise ProfileError(f"{source}: rfm.{unknown[0]}: unknown field")
    base = Rfm()
    try:
        recency = parse_duration(section.get("recency", "30d"))
    except DurationError as exc:
        raise ProfileError(f"{source}: rfm.recency: {exc}") from exc
    frequency = section.get("frequency", base.frequency)
    if isinstance(frequency, bool) or not isinstance(frequency, int) or frequency < 1:
        raise ProfileError(f"{source}: rfm.frequency: a number of orders, at least 1")
    monetary = section.get("monetary", base.monetary)
    if isinstance(monetary, bool) or not isinstance(monetary, int | float) or not 0 < monetary < math.inf:
        raise ProfileError(f"{source}: rfm.monetary: a positive amount")
    return Rfm(recency, frequency, float(monetary))


def _quality(section: Any, source: str) -> dict[str, Any]:
    if section is None:
        return {}
    weights = section.get("weights") if isinstance(section, Mapping) else None
    if not isinstance(weights, Mapping) or set(section) - {"weights"}:
        raise ProfileError(f"{source}: channel_quality: expected {{weights: {{metric: weight}}}}")
    unknown = sorted(str(k) for k in set(weights) - set(QUALITY_METRICS))
    if unknown:
        raise ProfileError(
            f"{source}: channel_quality.weights.{unknown[0]}: unknown; use {', '.join(QUALITY_METRICS)}"
        )
    for name, w in weights.items():
        if isinstance(w, bool) or not isinstance(w, int | float) or not 0 <= w < math.inf:
            raise ProfileError(f"{source}: channel_quality.weights.{name}: a non-negative number")
    return {"quality_weights": tuple((m, float(weights.get(m, 0))) for m in QUALITY_METRICS)}


def _retention_days(value: Any, source: str) -> tuple[int, ...]:
    ok = isinstance(value, list) and 0 < len(value) <= 16
    ok = ok and all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 3650 for v in value)
    if not ok or len(set(value)) != len(value):
        raise ProfileError(f"{source}: retention_days: expected 1 to 16 distinct day counts from 1 to 3650")
    return tuple(sorted(value))


def _type_set(value: Any, field: str, source: str) -> frozenset[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and _EVENT_TYPE.fullmatch(v) for v in value):
        raise ProfileError(
            f"{source}: {field}: expected a list of event types matching {_EVENT_TYPE.pattern}"
        )
    return frozenset(value)


MAX_EVENT_MAP = 1000


def _event_map(value: Any, source: str) -> dict[str, str]:
    """The built-in tracking-spec names, overridden and extended by the profile's own."""
    if value is None:
        return dict(DEFAULT_EVENT_MAP)
    if (
        not isinstance(value, Mapping)
        or len(value) > MAX_EVENT_MAP
        or not all(isinstance(k, str) and 0 < len(k) <= 128 for k in value)
        or not all(isinstance(v, str) and _EVENT_TYPE.fullmatch(v) for v in value.values())
    ):
        raise ProfileError(
            f"{source}: event_map: expected at most {MAX_EVENT_MAP} entries of a tracked event name "
            f"(1..128 characters) to an event type matching {_EVENT_TYPE.pattern}"
        )
    return {**DEFAULT_EVENT_MAP, **value}
