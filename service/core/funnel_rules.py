"""Funnel definitions of a profile: the core path (`funnel:`) and the named funnels (`funnels:`).

The core path is the profile's historic single funnel, counted by occurrences (any order,
no window); everything else that reads "the funnel" (a user's stage, audiences,
time-to-convert) means it. Named funnels add an order (`any` or `strict`) and an optional
conversion window from the funnel's first step; `service.core.named_funnels` says what a
user's step in one is. Every error names the field, as the profile's own do.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from service.core.durations import DurationError, format_duration, parse_duration

NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
EVENT_TYPE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
CORE = "core"  # the name the core path (`funnel:`) goes by among the funnels
MAX_FUNNELS = 8  # named funnels besides the core path
MAX_STEPS = 8
MAX_NTH = 5  # a named funnel keeps the first `nth` times of a step's event type per user
MAX_NTH_CORE = 1000  # the core path counts occurrences, so its `nth` costs nothing per user


class FunnelRulesError(ValueError):
    """A funnel definition that cannot be used; the message names the offending field."""


class Order(StrEnum):
    ANY = "any"  # steps in any order; a user is at the furthest step reached
    STRICT = "strict"  # each step reached at or after the previous one


@dataclass(frozen=True, slots=True)
class FunnelStage:
    """A step of a funnel: reached at the `nth` occurrence of event type `event`."""

    name: str
    event: str
    nth: int = 1


@dataclass(frozen=True, slots=True)
class NamedFunnel:
    """A funnel of `funnels:`; `window` (ms) counts from the time the user entered it."""

    name: str
    steps: tuple[FunnelStage, ...]
    order: Order = Order.ANY
    window: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "order": self.order.value,
            "window": None if self.window is None else format_duration(self.window),
            "window_ms": self.window,
            "steps": [{"name": s.name, "event": s.event, "nth": s.nth} for s in self.steps],
        }


def parse_stages(
    section: Any, where: str, max_nth: int = MAX_NTH_CORE, bare: bool = False
) -> tuple[FunnelStage, ...]:
    """A non-empty list of steps, each `{name, event, nth}`; with `bare` (named funnels) an
    event type alone stands for `{name: <event>, event: <event>}`."""
    if not isinstance(section, list) or not section:
        raise FunnelRulesError(f"{where}: expected a non-empty list of {{name, event, nth}}")
    stages: list[FunnelStage] = []
    seen_names: set[str] = set()
    seen_steps: set[tuple[str, int]] = set()
    for i, item in enumerate(section):
        at = f"{where}[{i}]"
        if bare and isinstance(item, str):
            item = {"name": item, "event": item}
        if not isinstance(item, Mapping):
            raise FunnelRulesError(
                f"{at}: expected an event type or a mapping with name, event and optional nth"
            )
        unknown = sorted(str(k) for k in set(item) - {"name", "event", "nth"})
        if unknown:
            raise FunnelRulesError(f"{at}.{unknown[0]}: unknown field")
        name, event, nth = item.get("name"), item.get("event"), item.get("nth", 1)
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise FunnelRulesError(f"{at}.name: {name!r} must match {NAME.pattern}")
        if name in seen_names:
            raise FunnelRulesError(f"{at}.name: {name!r} is used twice")
        if not isinstance(event, str) or not EVENT_TYPE.fullmatch(event):
            raise FunnelRulesError(f"{at}.event: {event!r} must match {EVENT_TYPE.pattern}")
        if isinstance(nth, bool) or not isinstance(nth, int) or not 1 <= nth <= max_nth:
            raise FunnelRulesError(f"{at}.nth: {nth!r} must be an integer from 1 to {max_nth}")
        if (event, nth) in seen_steps:
            raise FunnelRulesError(f"{at}: the {nth}. {event!r} is already an earlier stage")
        seen_names.add(name)
        seen_steps.add((event, nth))
        stages.append(FunnelStage(name=name, event=event, nth=nth))
    return tuple(stages)


def parse_funnels(
    core: Any, named: Any, source: str
) -> tuple[tuple[FunnelStage, ...], tuple[NamedFunnel, ...]]:
    """The core path and the named funnels from a profile's `funnel:` and `funnels:`.

    `funnels.core` is the core path written the new way: then it must be `order: any`
    without a window (it is what the old `funnel:` always meant), and `funnel:` must be
    absent. A funnel given as a bare list of steps is `order: any` without a window.
    """
    if named is None:
        named = {}
    if not isinstance(named, Mapping):
        raise FunnelRulesError(f"{source}: funnels: expected a mapping of funnel names to their steps")
    if CORE in named:
        if core is not None:
            raise FunnelRulesError(
                f"{source}: funnels.core: the core path is given twice; keep `funnel:` or `funnels.core`"
            )
        spec = _spec(named[CORE], f"{source}: funnels.core")
        if spec.get("order", Order.ANY.value) != Order.ANY.value or spec.get("window") is not None:
            raise FunnelRulesError(
                f"{source}: funnels.core: the core path is counted in any order without a window; "
                "give an ordered or windowed funnel another name"
            )
        unknown = sorted(str(k) for k in set(spec) - {"steps", "order", "window"})
        if unknown:
            raise FunnelRulesError(f"{source}: funnels.core.{unknown[0]}: unknown field")
        core = spec.get("steps")
        where = f"{source}: funnels.core.steps"
    else:
        where = f"{source}: funnel"
    stages = parse_stages(core, where, bare=where.endswith(".steps"))
    extra = [name for name in named if name != CORE]
    if len(extra) > MAX_FUNNELS:
        raise FunnelRulesError(f"{source}: funnels: at most {MAX_FUNNELS} named funnels besides core")
    funnels = tuple(_named(name, named[name], f"{source}: funnels") for name in extra)
    return stages, funnels


def _spec(value: Any, where: str) -> Mapping[Any, Any]:
    if isinstance(value, list):
        return {"steps": value}
    if not isinstance(value, Mapping):
        raise FunnelRulesError(f"{where}: expected a list of steps or a mapping with steps, order, window")
    return value


def _named(name: Any, value: Any, where: str) -> NamedFunnel:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise FunnelRulesError(f"{where}.{name}: the funnel name must match {NAME.pattern}")
    where = f"{where}.{name}"
    spec = _spec(value, where)
    unknown = sorted(str(k) for k in set(spec) - {"steps", "order", "window"})
    if unknown:
        raise FunnelRulesError(f"{where}.{unknown[0]}: unknown field")
    steps = parse_stages(spec.get("steps"), f"{where}.steps", MAX_NTH, bare=True)
    if len(steps) > MAX_STEPS:
        raise FunnelRulesError(f"{where}.steps: at most {MAX_STEPS} steps")
    order = spec.get("order", Order.ANY.value)
    if order not in (Order.ANY.value, Order.STRICT.value):
        raise FunnelRulesError(f"{where}.order: {order!r} must be 'any' or 'strict'")
    window = spec.get("window")
    if window is not None:
        try:
            window = parse_duration(window)
        except DurationError as exc:
            raise FunnelRulesError(f"{where}.window: {exc}") from exc
        if window <= 0:
            raise FunnelRulesError(f"{where}.window: must be longer than 0")
    return NamedFunnel(name, steps, Order(order), window)
