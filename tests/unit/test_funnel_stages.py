"""The core path funnel: furthest stage, nth occurrences, conversion."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from service.core.funnel import conversion, furthest_stage
from service.core.profile import FunnelStage

FUNNEL = (
    FunnelStage("visit", "visit"),
    FunnelStage("register", "register"),
    FunnelStage("first_order", "order"),
    FunnelStage("repurchase", "order", 2),
)


def test_repurchase_is_the_second_order() -> None:
    assert furthest_stage({"visit": 1, "register": 1, "order": 1}, FUNNEL) == 2
    assert furthest_stage({"visit": 1, "register": 1, "order": 2}, FUNNEL) == 3
    assert furthest_stage({}, FUNNEL) == -1


def test_stages_reached_out_of_order_count_as_the_furthest() -> None:
    assert furthest_stage({"order": 1}, FUNNEL) == 2


@given(st.dictionaries(st.sampled_from(["visit", "register", "order", "other"]), st.integers(0, 5)))
def test_more_events_never_move_a_user_back(counts: dict[str, int]) -> None:
    before = furthest_stage(counts, FUNNEL)
    for etype in ("visit", "register", "order"):
        more = {**counts, etype: counts.get(etype, 0) + 1}
        assert furthest_stage(more, FUNNEL) >= before


def test_conversion_from_the_previous_stage() -> None:
    assert conversion([100, 40, 10, 0]) == [None, 0.4, 0.25, 0.0]
    assert conversion([0, 0]) == [None, None]
