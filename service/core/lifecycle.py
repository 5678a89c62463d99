"""Lifecycle stages as a pure function of (first_seen, last_active, clock, thresholds).

Nothing about a user's stage is stored: it is computed from two timestamps, so it is
exact at any clock and a replay cannot make it drift. What *is* recorded are the
transitions (entering silent, being recalled from churned, ...), and those come from
the same function evaluated at the moments the stage can change.
"""

from __future__ import annotations

from enum import StrEnum

from service.core.profile import Thresholds


class State(StrEnum):
    NEW = "new"
    RETAINED = "retained"
    SILENT = "silent"
    CHURNED = "churned"
    DEAD = "dead"


STATES: tuple[State, ...] = tuple(State)
INACTIVE: frozenset[State] = frozenset({State.SILENT, State.CHURNED, State.DEAD})


def state_at(first_seen: int, last_active: int, now: int, t: Thresholds) -> State:
    """The definition of a stage: idleness first, then the new window."""
    idle = now - last_active
    if idle >= t.dead_after:
        return State.DEAD
    if idle >= t.churn_after:
        return State.CHURNED
    if idle >= t.silent_after:
        return State.SILENT
    if now - first_seen < t.new_window:
        return State.NEW
    return State.RETAINED


def change_points(first_seen: int, last_active: int, t: Thresholds) -> tuple[int, ...]:
    """The only clock values at which the stage of an untouched user can change."""
    return tuple(
        sorted(
            {
                first_seen + t.new_window,
                last_active + t.silent_after,
                last_active + t.churn_after,
                last_active + t.dead_after,
            }
        )
    )


def time_transitions(
    first_seen: int, last_active: int, after: int, until: int, t: Thresholds
) -> list[tuple[State, State]]:
    """The stage changes that the passing of time causes in the interval `(after, until]`."""
    return [(a, b) for _, a, b in timed_transitions(first_seen, last_active, after, until, t)]


def timed_transitions(
    first_seen: int, last_active: int, after: int, until: int, t: Thresholds
) -> list[tuple[int, State, State]]:
    """`time_transitions` with the clock value at which each change happens."""
    if until <= after:
        return []
    new_end = first_seen + t.new_window
    if not after < new_end <= until and (
        last_active + t.silent_after > until or last_active + t.dead_after <= after
    ):
        return []  # the common case (an active user's next event): no change point in between
    out: list[tuple[int, State, State]] = []
    prev = state_at(first_seen, last_active, after, t)
    for point in change_points(first_seen, last_active, t):
        if after < point <= until:
            cur = state_at(first_seen, last_active, point, t)
            if cur != prev:
                out.append((point, prev, cur))
                prev = cur
    return out
