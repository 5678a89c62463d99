"""The `triggers:` section of a profile: what to send, when, and the guard rails around it.

Recall, renewal and onboarding rules (who is recalled how, when a policy holder is reminded,
when a new user is nudged to a first order) are product data like the lifecycle thresholds, so they live in
the profile and fail at start-up with the field named when they are wrong.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from service.core.durations import DurationError, parse_duration

_TIER = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
RECALL_STATES = ("silent", "churned", "dead")
KINDS = ("recall", "renewal", "expiry", "onboarding")


class TriggerRulesError(ValueError):
    """A `triggers:` section that cannot be used; the message names the field."""


def recall_plan(state: str) -> str:
    """Silent and churned users get a transaction recall, dead users a login recall."""
    return "login" if state == "dead" else "transaction"


@dataclass(frozen=True, slots=True)
class RecallRule:
    """Recall for users entering `state`, `delay` after they entered it."""

    state: str
    delay: int
    tier: str

    @property
    def recall(self) -> str:
        return recall_plan(self.state)


@dataclass(frozen=True, slots=True)
class QuietHours:
    """Local wall-clock window (minutes after midnight) in which nothing is sent; may wrap midnight."""

    start: int
    end: int
    zone: str

    def contains(self, minute: int) -> bool:
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end


@dataclass(frozen=True, slots=True)
class TriggerRules:
    recall: tuple[RecallRule, ...] = (
        RecallRule("silent", 0, "small_coupon"),
        RecallRule("churned", 0, "large_coupon"),
        RecallRule("dead", 0, "login_bonus"),
    )
    advisor_revenue: float | None = None  # None: the profile's rfm.monetary
    renewal_offsets: tuple[int, ...] = (30 * 86_400_000, 7 * 86_400_000, 86_400_000)
    renewal_tier: str = "renewal_reminder"
    expiry_tier: str = "expiry_winback"
    renewal_enabled: bool = True
    onboarding_after: frozenset[str] = field(default_factory=lambda: frozenset({"register", "verify"}))
    onboarding_window: int = 7 * 86_400_000
    onboarding_tier: str = "first_order_incentive"
    onboarding_enabled: bool = True
    cap_max: int | None = None  # at most this many triggers per user ...
    cap_window: int = 7 * 86_400_000  # ... in any window of this length
    quiet: QuietHours | None = None
    holdout_percent: float = 0.0
    attribution_window: int = 7 * 86_400_000

    def recall_rule(self, state: str) -> RecallRule | None:
        for rule in self.recall:
            if rule.state == state:
                return rule
        return None


_KEYS = {
    "recall",
    "renewal",
    "onboarding",
    "frequency_cap",
    "quiet_hours",
    "holdout_percent",
    "attribution_window",
}


def parse_trigger_rules(
    section: Any, source: str, idle_after: Mapping[str, int] | None = None
) -> TriggerRules:
    """Validate the `triggers:` mapping; `idle_after` maps each recall state to its threshold and
    the next one's, so a delay cannot push a recall past the state it is about."""
    if section is None:
        return TriggerRules()
    where = f"{source}: triggers"
    if not isinstance(section, Mapping):
        raise TriggerRulesError(f"{where}: expected a mapping")
    _no_unknown(section, _KEYS, where)
    base = TriggerRules()
    recall, advisor = _recall(section.get("recall"), where, base, idle_after or {})
    renewal = _mapping(section.get("renewal"), f"{where}.renewal")
    _no_unknown(renewal, {"enabled", "reminders", "tier", "expiry_tier"}, f"{where}.renewal")
    reminders = renewal.get("reminders", ["30d", "7d", "1d"])
    if not isinstance(reminders, list) or len(reminders) > 16:
        raise TriggerRulesError(f"{where}.renewal.reminders: a list of at most 16 durations before the end")
    offsets = tuple(
        sorted(
            {_duration(v, f"{where}.renewal.reminders[{i}]") for i, v in enumerate(reminders)}, reverse=True
        )
    )
    onboarding = _mapping(section.get("onboarding"), f"{where}.onboarding")
    _no_unknown(onboarding, {"enabled", "after", "window", "tier"}, f"{where}.onboarding")
    after = onboarding.get("after", ["register", "verify"])
    if (
        not isinstance(after, list)
        or not after
        or not all(isinstance(a, str) and _TIER.fullmatch(a) for a in after)
    ):
        raise TriggerRulesError(f"{where}.onboarding.after: a non-empty list of event types")
    cap = section.get("frequency_cap")
    cap_max, cap_window = None, base.cap_window
    if cap is not None:
        cap = _mapping(cap, f"{where}.frequency_cap")
        _no_unknown(cap, {"max", "per"}, f"{where}.frequency_cap")
        cap_max = cap.get("max")
        if isinstance(cap_max, bool) or not isinstance(cap_max, int) or not 1 <= cap_max <= 100:
            raise TriggerRulesError(f"{where}.frequency_cap.max: an integer from 1 to 100")
        cap_window = _duration(cap.get("per", "7d"), f"{where}.frequency_cap.per")
    holdout = section.get("holdout_percent", 0)
    if isinstance(holdout, bool) or not isinstance(holdout, int | float) or not 0 <= holdout <= 50:
        raise TriggerRulesError(f"{where}.holdout_percent: a number from 0 to 50")
    return TriggerRules(
        recall=recall,
        advisor_revenue=advisor,
        renewal_offsets=offsets,
        renewal_tier=_tier(renewal.get("tier", base.renewal_tier), f"{where}.renewal.tier"),
        expiry_tier=_tier(renewal.get("expiry_tier", base.expiry_tier), f"{where}.renewal.expiry_tier"),
        renewal_enabled=_flag(renewal.get("enabled", True), f"{where}.renewal.enabled"),
        onboarding_after=frozenset(after),
        onboarding_window=_duration(onboarding.get("window", "7d"), f"{where}.onboarding.window"),
        onboarding_tier=_tier(onboarding.get("tier", base.onboarding_tier), f"{where}.onboarding.tier"),
        onboarding_enabled=_flag(onboarding.get("enabled", True), f"{where}.onboarding.enabled"),
        cap_max=cap_max,
        cap_window=cap_window,
        quiet=_quiet(section.get("quiet_hours"), f"{where}.quiet_hours"),
        holdout_percent=float(holdout),
        attribution_window=_duration(section.get("attribution_window", "7d"), f"{where}.attribution_window"),
    )


def _recall(
    section: Any, where: str, base: TriggerRules, idle_after: Mapping[str, int]
) -> tuple[tuple[RecallRule, ...], float | None]:
    if section is None:
        return base.recall, None
    section = _mapping(section, f"{where}.recall")
    _no_unknown(section, {*RECALL_STATES, "advisor_revenue"}, f"{where}.recall")
    defaults = {r.state: r for r in base.recall}
    rules: list[RecallRule] = []
    for i, state in enumerate(RECALL_STATES):
        raw = section.get(state, {})
        if raw is False:
            continue
        raw = _mapping(raw, f"{where}.recall.{state}")
        _no_unknown(raw, {"delay", "tier"}, f"{where}.recall.{state}")
        delay = _duration(raw.get("delay", "0d"), f"{where}.recall.{state}.delay", allow_zero=True)
        nxt = RECALL_STATES[i + 1] if i + 1 < len(RECALL_STATES) else None
        if nxt and state in idle_after and nxt in idle_after and delay >= idle_after[nxt] - idle_after[state]:
            raise TriggerRulesError(
                f"{where}.recall.{state}.delay: must be shorter than the time from {state} to {nxt}"
            )
        rules.append(
            RecallRule(
                state, delay, _tier(raw.get("tier", defaults[state].tier), f"{where}.recall.{state}.tier")
            )
        )
    advisor = section.get("advisor_revenue")
    if advisor is not None and (
        isinstance(advisor, bool) or not isinstance(advisor, int | float) or advisor <= 0
    ):
        raise TriggerRulesError(f"{where}.recall.advisor_revenue: a positive amount")
    return tuple(rules), None if advisor is None else float(advisor)


def _quiet(section: Any, where: str) -> QuietHours | None:
    if section is None:
        return None
    section = _mapping(section, where)
    _no_unknown(section, {"start", "end", "time_zone"}, where)
    minutes = []
    for key in ("start", "end"):
        value = section.get(key)
        m = _CLOCK.fullmatch(value) if isinstance(value, str) else None
        if not m:
            raise TriggerRulesError(f"{where}.{key}: a local time 'HH:MM'")
        minutes.append(int(m.group(1)) * 60 + int(m.group(2)))
    if minutes[0] == minutes[1]:
        raise TriggerRulesError(f"{where}.end: must differ from start")
    zone = section.get("time_zone", "UTC")
    try:
        ZoneInfo(str(zone))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise TriggerRulesError(f"{where}.time_zone: unknown time zone {zone!r}") from exc
    return QuietHours(minutes[0], minutes[1], str(zone))


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TriggerRulesError(f"{where}: expected a mapping")
    return value


def _no_unknown(section: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(str(k) for k in set(section) - allowed)
    if unknown:
        raise TriggerRulesError(f"{where}.{unknown[0]}: unknown field; allowed: {', '.join(sorted(allowed))}")


def _duration(value: Any, where: str, allow_zero: bool = False) -> int:
    try:
        ms = parse_duration(value)
    except DurationError as exc:
        raise TriggerRulesError(f"{where}: {exc}") from exc
    if ms < 0 or (ms == 0 and not allow_zero):
        raise TriggerRulesError(f"{where}: must be positive")
    return ms


def _tier(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _TIER.fullmatch(value):
        raise TriggerRulesError(f"{where}: {value!r} must match {_TIER.pattern}")
    return value


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise TriggerRulesError(f"{where}: true or false")
    return value
