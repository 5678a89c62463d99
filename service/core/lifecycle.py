"""Lifecycle stages as a pure function of (first_seen, last_active, clock, thresholds).

Nothing about a user's stage is stored: it is computed from two timestamps, so it is
exact at any clock and a replay cannot make it drift. What *is* recorded are the
transitions (entering silent, being recalled from churned, ...), and those come from
the same function evaluated at the moments the stage can change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class Thresholds:
    """Lifecycle durations in milliseconds; `new_window <= silent_after < churn_after < dead_after`."""

    new_window: int
    silent_after: int
    churn_after: int
    dead_after: int


class ThresholdsError(ValueError):
    """Thresholds out of order; `field` names the one to change."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def validate_thresholds(t: Thresholds) -> Thresholds:
    """The thresholds, if every duration is positive and they come in lifecycle order."""
    for name in ("new_window", "silent_after", "churn_after", "dead_after"):
        if getattr(t, name) <= 0:
            raise ThresholdsError(name, "must be positive")
    if not t.new_window <= t.silent_after:
        raise ThresholdsError("new_window", "must be <= silent_after")
    if not t.silent_after < t.churn_after:
        raise ThresholdsError("churn_after", "must be > silent_after")
    if not t.churn_after < t.dead_after:
        raise ThresholdsError("dead_after", "must be > churn_after")
    return t


class State(StrEnum):
    NEW = "new"
    RETAINED = "retained"
    SILENT = "silent"
    CHURNED = "churned"
    DEAD = "dead"


STATES: tuple[State, ...] = tuple(State)
INACTIVE: frozenset[State] = frozenset({State.SILENT, State.CHURNED, State.DEAD})
IDLE_STATES: tuple[State, ...] = (State.SILENT, State.CHURNED, State.DEAD)  # in the order they come


def idle_after(state: State | str, t: Thresholds) -> int:
    """The idle time at which a user enters idle state `state` (silent, churned or dead)."""
    if state == State.SILENT:
        return t.silent_after
    if state == State.CHURNED:
        return t.churn_after
    if state == State.DEAD:
        return t.dead_after
    raise ValueError(f"{state!r} is not an idle state")


def idle_thresholds(t: Thresholds) -> dict[str, int]:
    """Each idle state's name and the idle time it starts at."""
    return {s.value: idle_after(s, t) for s in IDLE_STATES}


def idle_range(state: State, t: Thresholds) -> tuple[int | None, int | None]:
    """Idle times (`now - last_active`) of users in `state`, as `[lo, hi)`; None: unbounded.
    New and retained share theirs: they differ by the new window, not by idleness."""
    if state is State.DEAD:
        return (t.dead_after, None)
    if state is State.CHURNED:
        return (t.churn_after, t.dead_after)
    if state is State.SILENT:
        return (t.silent_after, t.churn_after)
    return (None, t.silent_after)  # an event ahead of the clock is idle for less than 0


def last_active_range(state: State, now: int, t: Thresholds) -> tuple[int | None, int | None]:
    """`last_active` of users in `state` at `now`, inclusive bounds (None: unbounded)."""
    lo, hi = idle_range(state, t)
    return (None if hi is None else now - hi + 1, None if lo is None else now - lo)


def new_since(now: int, t: Thresholds) -> int:
    """The earliest `first_seen` of a user still in the new window at `now` (if not idle)."""
    return now - t.new_window + 1


def entered_at(first_seen: int, last_active: int, state: State, t: Thresholds) -> int:
    """When the user entered `state`, from the record alone: idle states at `last_active` +
    their threshold; `new` at `first_seen`; `retained` when the new window ended (the record
    keeps no history, so a user recalled into retained is dated from their new window's end)."""
    return (last_active if state in INACTIVE else first_seen) + entered_offset(state, t)


def entered_offset(state: State, t: Thresholds) -> int:
    """How long after its anchor (`last_active` for idle states, `first_seen` for new and
    retained) a user enters `state`."""
    if state in INACTIVE:
        return idle_after(state, t)
    return 0 if state is State.NEW else t.new_window


def classifier(now: int, t: Thresholds) -> Callable[[int, int], tuple[str, int]]:
    """`(state, entered_at)` of `(first_seen, last_active)` at `now`, with the edges worked out
    once: the per-user cost of an export. Agrees with `state_at` and `entered_at`."""
    dead_edge, churn_edge, silent_edge = now - t.dead_after, now - t.churn_after, now - t.silent_after
    new_edge = now - t.new_window
    dead, churn, silent, window = t.dead_after, t.churn_after, t.silent_after, t.new_window

    def classify(first_seen: int, last_active: int) -> tuple[str, int]:
        if last_active <= dead_edge:
            return "dead", last_active + dead
        if last_active <= churn_edge:
            return "churned", last_active + churn
        if last_active <= silent_edge:
            return "silent", last_active + silent
        if first_seen > new_edge:
            return "new", first_seen
        return "retained", first_seen + window

    return classify


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


def change_offsets(t: Thresholds) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Where the stage of an untouched user can change, as offsets: after `last_active` (each
    idle threshold) and after `first_seen` (the end of the new window)."""
    return (t.silent_after, t.churn_after, t.dead_after), (t.new_window,)


def change_points(first_seen: int, last_active: int, t: Thresholds) -> tuple[int, ...]:
    """The only clock values at which the stage of an untouched user can change
    (`change_offsets` applied, written out: this is on the batch's hot path)."""
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
