"""The core path funnel: a user's stage is the furthest stage whose nth event they have had."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Mapping

from service.core import counters as ctr
from service.core.gaps import gap_bucket
from service.core.profile import FunnelStage
from service.core.records import UserRecord

REGISTRATION = "register"  # the event type that makes a user registered (payment rate's denominator)


def furthest_stage(counts: Mapping[str, int], funnel: tuple[FunnelStage, ...]) -> int:
    """Index of the furthest stage reached (-1 for none).

    Stages need not be reached in order (a first order without a verification still
    reaches `first_order`); counting a user for every stage up to the furthest keeps the
    stage counts monotone, as operators read a funnel.
    """
    reached = -1
    for i, stage in enumerate(funnel):
        if counts.get(stage.event, 0) >= stage.nth:
            reached = i
    return reached


def stage_steps(funnel: tuple[FunnelStage, ...]) -> dict[str, frozenset[int]]:
    """For each funnel event type, the occurrence counts at which it completes a stage: only
    then can an event of that type move the user's stage."""
    steps: dict[str, set[int]] = {}
    for stage in funnel:
        steps.setdefault(stage.event, set()).add(stage.nth)
    return {event: frozenset(nths) for event, nths in steps.items()}


def count_step(
    rec: UserRecord,
    etype: str,
    ts: int,
    funnel: tuple[FunnelStage, ...],
    steps: Mapping[str, frozenset[int]],
    counts: Counter[str],
    conversions: list[tuple[int, int]],
) -> None:
    """An event of a type the funnel (or registration) counts, for an existing user; `steps`
    is `stage_steps(funnel)`. Counts: `registered` on the first registration; `stage` and
    `time_to_convert` for each stage newly reached, whose (stage, ms since first seen) also
    goes to `conversions`."""
    seen = rec.counts.get(etype, 0) + 1
    rec.counts[etype] = seen
    if etype == REGISTRATION and seen == 1:
        counts[ctr.registered(rec.channel)] += 1
    nths = steps.get(etype)
    if nths is None or seen not in nths:  # no stage completes at this count: the stage stays
        return
    reached = furthest_stage(rec.counts, funnel)
    for k in range(rec.stage + 1, reached + 1):
        counts[ctr.stage(rec.channel, k)] += 1
        since_first = ts - rec.first_seen
        bucket = gap_bucket(since_first)
        counts[ctr.time_to_convert(k, -1 if bucket is None else bucket)] += 1
        conversions.append((k, since_first))
    if reached > rec.stage:
        rec.stage = reached


def conversion(users: list[int]) -> list[float | None]:
    """Conversion of each stage from the previous one (None for the first or from zero)."""
    out: list[float | None] = [None]
    for prev, cur in itertools.pairwise(users):
        out.append(cur / prev if prev else None)
    return out
