"""The core path funnel: a user's stage is the furthest stage whose nth event they have had."""

from __future__ import annotations

import itertools
from collections.abc import Mapping

from service.core.profile import FunnelStage


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


def conversion(users: list[int]) -> list[float | None]:
    """Conversion of each stage from the previous one (None for the first or from zero)."""
    out: list[float | None] = [None]
    for prev, cur in itertools.pairwise(users):
        out.append(cur / prev if prev else None)
    return out
