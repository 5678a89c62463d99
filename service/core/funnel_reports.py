"""The funnels as the API and the metrics report them, from the summed counters.

Pure: the storage layer sums the partitions' counters and hands them here, so the route,
the console and the population metrics read one shape. The core path is `core`, counted
by `counters.stage`; the named funnels by `counters.named_funnel(_cohort)`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from service.core import counters as ctr
from service.core.calendar import Calendar
from service.core.funnel import conversion
from service.core.funnel_rules import CORE, FunnelStage, NamedFunnel, Order


def core_definition(stages: tuple[FunnelStage, ...]) -> NamedFunnel:
    """The core path as a funnel among the others: any order, no window."""
    return NamedFunnel(CORE, stages, Order.ANY, None)


def step_rows(steps: Sequence[FunnelStage], users: Sequence[int]) -> list[dict[str, Any]]:
    """Users at each step or further, with conversion from the previous and the first step."""
    first = users[0] if users else 0
    return [
        {
            "name": step.name,
            "event": step.event,
            "nth": step.nth,
            "users": n,
            "conversion_from_previous": c,
            "conversion_from_first": (n / first) if first else None,
        }
        for step, n, c in zip(steps, users, conversion(list(users)), strict=True)
    ]


def step_users(totals: Mapping[str, float], funnel: NamedFunnel, channel: str | None) -> list[int]:
    """Users per step of a funnel from the summed counters, of one stored channel or all."""
    users = [0] * len(funnel.steps)
    prefix = "stage|" if funnel.name == CORE else f"fn|{funnel.name}|"
    for name, value in totals.items():
        if not name.startswith(prefix):
            continue
        parts = ctr.split(name)
        ch, k = parts[-2], int(parts[-1])
        if (channel is None or ch == channel) and k < len(users):
            users[k] += int(value)
    return users


def steps_by_channel(
    totals: Mapping[str, float], funnels: Sequence[NamedFunnel]
) -> dict[str, dict[str, list[int]]]:
    """Funnel name -> stored channel -> users per step, in one pass over the counters."""
    sizes = {f.name: len(f.steps) for f in funnels}
    out: dict[str, dict[str, list[int]]] = {f.name: {} for f in funnels}
    for name, value in totals.items():
        if name.startswith("stage|"):
            _, ch, k = ctr.split(name)
            funnel = CORE
        elif name.startswith("fn|"):
            _, funnel, ch, k = ctr.split(name)
        else:
            continue
        if funnel in sizes and int(k) < sizes[funnel]:
            out[funnel].setdefault(ch, [0] * sizes[funnel])[int(k)] += int(value)
    return out


def cohort_users(
    cohorts: Mapping[str, int], funnel: NamedFunnel, channel: str | None
) -> dict[int, list[int]]:
    """Users per step by the Monday (day number) of the week they entered the funnel."""
    out: dict[int, list[int]] = defaultdict(lambda: [0] * len(funnel.steps))
    prefix = f"fnc|{funnel.name}|"
    for name, value in cohorts.items():
        if not name.startswith(prefix):
            continue
        _, _, ch, week, k = ctr.split(name)
        if (channel is None or ch == channel) and int(k) < len(funnel.steps):
            out[int(week)][int(k)] += int(value)
    return dict(out)


def funnel_report(
    funnel: NamedFunnel,
    totals: Mapping[str, float],
    channel: str | None,
    cohorts: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """One funnel's document: its definition, users per step, and with `cohorts` (the summed
    cohort counters) the same per entry week, oldest first."""
    body = {**funnel.to_json(), "steps": step_rows(funnel.steps, step_users(totals, funnel, channel))}
    if cohorts is not None:
        weeks = cohort_users(cohorts, funnel, channel)
        body["cohorts"] = [
            {"week": Calendar.iso(week), "steps": step_rows(funnel.steps, weeks[week])}
            for week in sorted(weeks)
            if weeks[week][0]
        ]
    return body


def funnel_summary(funnel: NamedFunnel, totals: Mapping[str, float], channel: str | None) -> dict[str, Any]:
    """A funnel in the list: its definition, users per step, and overall conversion."""
    users = step_users(totals, funnel, channel)
    entered, completed = (users[0], users[-1]) if users else (0, 0)
    body = funnel.to_json()
    for step, n in zip(body["steps"], users, strict=True):
        step["users"] = n
    body.update(
        {"entered": entered, "completed": completed, "conversion": completed / entered if entered else None}
    )
    return body
