"""Named funnels in a profile: `funnels:` parses, `funnel:` stays the core path, and every
mistake is a `ProfileError` naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from service.core.funnel_rules import MAX_FUNNELS, FunnelStage, NamedFunnel, Order
from service.core.profile import ProfileError, parse_profile

LIFECYCLE = {"new_window": "1d", "silent_after": "2d", "churn_after": "5d", "dead_after": "12d"}
CORE = [{"name": "visit", "event": "visit"}, {"name": "first_order", "event": "order"}]


def doc(**extra: Any) -> dict[str, Any]:
    return {"lifecycle": LIFECYCLE, "funnel": CORE, **extra}


def test_named_funnels_parse_with_order_window_and_bare_steps() -> None:
    profile = parse_profile(
        doc(
            funnels={
                "signup": {"order": "strict", "steps": ["visit", "register", "verify"]},
                "first_order_7d": {
                    "order": "strict",
                    "window": "7d",
                    "steps": ["register", {"name": "first_order", "event": "order"}],
                },
                "repeat": [
                    {"name": "first", "event": "order"},
                    {"name": "second", "event": "order", "nth": 2},
                ],
            }
        )
    )
    signup, first_order, repeat = profile.funnels
    assert signup == NamedFunnel(
        "signup",
        (FunnelStage("visit", "visit"), FunnelStage("register", "register"), FunnelStage("verify", "verify")),
        Order.STRICT,
        None,
    )
    assert first_order.window == 7 * 86_400_000 and first_order.steps[1] == FunnelStage(
        "first_order", "order"
    )
    assert repeat.order is Order.ANY and repeat.window is None and repeat.steps[1].nth == 2
    assert profile.named_funnel_events == frozenset({"visit", "register", "verify", "order"})
    assert first_order.to_json()["window"] == "1w"  # the shortest exact spelling
    assert [s.name for s in profile.funnel] == ["visit", "first_order"]  # the core path unchanged


def test_funnels_core_is_the_core_path_written_the_new_way() -> None:
    new = parse_profile({"lifecycle": LIFECYCLE, "funnels": {"core": {"steps": CORE}}})
    old = parse_profile(doc())
    assert new.funnel == old.funnel and new.funnels == ()
    bare = parse_profile({"lifecycle": LIFECYCLE, "funnels": {"core": ["visit", "order"]}})
    assert [s.event for s in bare.funnel] == ["visit", "order"]


def test_no_named_funnels_by_default() -> None:
    assert parse_profile(doc()).funnels == ()


INVALID: list[tuple[dict[str, Any], str]] = [
    ({"funnels": ["visit"]}, "funnels:"),
    ({"funnels": {"Signup": ["visit"]}}, "funnels.Signup"),
    ({"funnels": {"a" * 33: ["visit"]}}, "funnels.aaa"),
    ({"funnels": {"signup": "visit"}}, "funnels.signup"),
    ({"funnels": {"signup": []}}, "funnels.signup.steps"),
    ({"funnels": {"signup": {"order": "strict"}}}, "funnels.signup.steps"),
    ({"funnels": {"signup": {"steps": ["visit"], "colour": 1}}}, "funnels.signup.colour"),
    ({"funnels": {"signup": {"steps": ["visit"], "order": "sorted"}}}, "funnels.signup.order"),
    ({"funnels": {"signup": {"steps": ["visit"], "window": "soon"}}}, "funnels.signup.window"),
    ({"funnels": {"signup": {"steps": ["visit"], "window": 0}}}, "funnels.signup.window"),
    ({"funnels": {"signup": {"steps": ["visit"], "window": True}}}, "funnels.signup.window"),
    ({"funnels": {"signup": ["visit", "visit"]}}, "funnels.signup.steps[1]"),
    ({"funnels": {"signup": ["a visit"]}}, "funnels.signup.steps[0]"),
    ({"funnels": {"signup": [{"event": "order", "nth": 6}]}}, "funnels.signup.steps[0]"),
    ({"funnels": {"signup": [{"name": "o", "event": "order", "nth": 6}]}}, "funnels.signup.steps[0].nth"),
    ({"funnels": {"signup": [f"s{i}" for i in range(9)]}}, "funnels.signup.steps"),
    ({"funnels": {f"f{i}": ["visit"] for i in range(MAX_FUNNELS + 1)}}, "funnels:"),
    ({"funnels": {"core": ["visit"]}}, "funnels.core"),  # and `funnel:` too
]


@pytest.mark.parametrize(("extra", "field"), INVALID, ids=[f for _, f in INVALID])
def test_every_invalid_funnel_fails_naming_the_field(extra: dict[str, Any], field: str) -> None:
    with pytest.raises(ProfileError) as info:
        parse_profile(doc(**extra), source="profile shop.yaml")
    assert str(info.value).startswith(f"profile shop.yaml: {field}")


@pytest.mark.parametrize(
    "core", [{"steps": CORE, "order": "strict"}, {"steps": CORE, "window": "7d"}, {"steps": CORE, "x": 1}]
)
def test_the_core_path_is_unordered_without_a_window(core: dict[str, Any]) -> None:
    with pytest.raises(ProfileError, match=r"funnels\.core"):
        parse_profile({"lifecycle": LIFECYCLE, "funnels": {"core": core}})


def test_the_core_path_keeps_its_old_rules() -> None:
    with pytest.raises(ProfileError, match=r"funnel\[1\]"):  # bare steps are for named funnels only
        parse_profile({"lifecycle": LIFECYCLE, "funnel": [CORE[0], "order"]})
    with pytest.raises(ProfileError, match="funnel: expected a non-empty list"):
        parse_profile({"lifecycle": LIFECYCLE, "funnels": {"signup": ["visit"]}})
