"""Profiles: built-ins and files load; every mistake is a `ProfileError` naming the field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from service.core.profile import (
    BUILTIN_PROFILES,
    FunnelStage,
    Profile,
    ProfileError,
    Rfm,
    Thresholds,
    load_profile,
    parse_profile,
)

HOUR = 3_600_000
DAY = 24 * HOUR


class _Delete:
    """The marker of a deleted field; its repr names it, so the test ids are the same in
    every process (pytest-xdist's workers must collect identical ids)."""

    def __repr__(self) -> str:
        return "DELETE"


DELETE = _Delete()


def valid() -> dict[str, Any]:
    return {
        "name": "shop",
        "description": "a test shop",
        "lifecycle": {"new_window": "1d", "silent_after": "2d", "churn_after": "5d", "dead_after": "12d"},
        "activity_types": ["visit", "order"],
        "revenue_types": ["order"],
        "rfm": {"recency": "30d", "frequency": 2, "monetary": 500},
        "channel_quality": {"weights": {"retention": 0.5, "conversion": 0.5}},
        "funnel": [
            {"name": "visit", "event": "visit"},
            {"name": "first_order", "event": "order"},
            {"name": "repurchase", "event": "order", "nth": 2},
        ],
    }


def with_change(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """The valid document with the value at `path` replaced (or deleted with DELETE)."""
    doc = valid()
    node: Any = doc
    for key in path[:-1]:
        node = node[key]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


# --- what loads ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "days"),
    [("insurance", (30, 30, 90, 365)), ("fintech", (14, 14, 45, 180)), ("daily_app", (3, 3, 14, 60))],
)
def test_the_builtin_profiles_load(name: str, days: tuple[int, int, int, int]) -> None:
    profile = load_profile(name)
    assert profile.name == name
    assert profile.thresholds == Thresholds(*(d * DAY for d in days))
    assert profile.revenue_types == frozenset({"order", "renew"})
    assert profile.funnel[0] == FunnelStage("visit", "visit", 1)
    assert profile.description


def test_builtin_names_are_the_three_profiles() -> None:
    assert set(BUILTIN_PROFILES) == {"insurance", "fintech", "daily_app"}


def test_builtin_funnels_and_activity() -> None:
    fintech = load_profile("fintech")
    assert [(s.name, s.event, s.nth) for s in fintech.funnel] == [
        ("visit", "visit", 1),
        ("register", "register", 1),
        ("bind_card", "verify", 1),
        ("first_order", "order", 1),
        ("repurchase", "order", 2),
    ]
    assert fintech.funnel_events == frozenset({"visit", "register", "verify", "order"})
    assert not fintech.is_activity("message_delivered")
    assert fintech.is_activity("order")
    insurance = load_profile("insurance")
    assert insurance.funnel[-1] == FunnelStage("renewal", "renew", 1)
    assert insurance.is_activity("quote") and not insurance.is_activity("message_delivered")
    for name in BUILTIN_PROFILES:  # a delivered message is not the user's own activity: it recalls nobody
        assert not load_profile(name).is_activity("message_delivered")
        assert load_profile(name).is_activity("visit")


def test_a_yaml_file_loads(tmp_path: Path) -> None:
    for suffix in (".yaml", ".yml"):
        path = tmp_path / f"shop{suffix}"
        path.write_text(yaml.safe_dump(valid()))
        profile = load_profile(str(path))
        assert profile == parse_profile(valid())
        assert profile.thresholds == Thresholds(DAY, 2 * DAY, 5 * DAY, 12 * DAY)


def test_a_toml_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "shop.toml"
    path.write_text(
        """
name = "shop"
description = "a test shop"
activity_types = ["visit", "order"]
revenue_types = ["order"]

[rfm]
recency = "30d"
frequency = 2
monetary = 500

[channel_quality.weights]
retention = 0.5
conversion = 0.5

[lifecycle]
new_window = "1d"
silent_after = "2d"
churn_after = "5d"
dead_after = "12d"

[[funnel]]
name = "visit"
event = "visit"

[[funnel]]
name = "first_order"
event = "order"

[[funnel]]
name = "repurchase"
event = "order"
nth = 2
"""
    )
    assert load_profile(str(path)) == parse_profile(valid())


def test_parsed_values() -> None:
    profile = parse_profile(valid())
    assert profile.rfm == Rfm(30 * DAY, 2, 500.0)
    assert dict(profile.quality_weights) == {
        "retention": 0.5,
        "conversion": 0.5,
        "revenue_per_user": 0.0,
        "ltv_cac": 0.0,
    }
    assert isinstance(profile, Profile)
    assert profile.name == "shop" and profile.description == "a test shop"
    assert profile.activity_types == frozenset({"visit", "order"})
    assert profile.revenue_types == frozenset({"order"})
    assert profile.funnel[2] == FunnelStage("repurchase", "order", 2)
    assert profile.funnel_events == frozenset({"visit", "order"})


def test_defaults() -> None:
    doc = valid()
    for key in ("name", "description", "activity_types", "revenue_types", "rfm", "channel_quality"):
        del doc[key]
    profile = parse_profile(doc)
    assert profile.name == "custom"
    assert profile.description == ""
    assert profile.activity_types is None and profile.is_activity("whatever")
    assert profile.revenue_types == frozenset({"order", "renew"})
    assert profile.funnel[0].nth == 1
    assert profile.retention_days == (1, 7, 30)
    assert profile.rfm == Rfm()
    assert sum(w for _, w in profile.quality_weights) == 1.0


def test_edge_values_that_are_valid() -> None:
    # new_window may equal silent_after; durations may be bare milliseconds
    doc = with_change(("lifecycle",), {"new_window": 5, "silent_after": 5, "churn_after": 6, "dead_after": 7})
    assert parse_profile(doc).thresholds == Thresholds(5, 5, 6, 7)
    assert parse_profile(with_change(("revenue_types",), [])).revenue_types == frozenset()
    assert parse_profile(with_change(("revenue_types",), None)).revenue_types == frozenset()
    assert parse_profile(with_change(("retention_days",), [30, 1, 7])).retention_days == (1, 7, 30)
    assert parse_profile(with_change(("funnel", 2, "nth"), 1000)).funnel[2].nth == 1000
    assert parse_profile(with_change(("name",), "a" + "b" * 31)).name == "a" + "b" * 31


# --- what fails, and names the field --------------------------------------------------------


INVALID: list[tuple[tuple[Any, ...], Any, str]] = [
    # top level
    (("colour",), "red", "colour"),
    (("name",), "Shop", "name"),
    (("name",), "", "name"),
    (("name",), 5, "name"),
    (("name",), "a" * 33, "name"),
    (("name",), "shop\n", "name"),
    # lifecycle
    (("lifecycle",), DELETE, "lifecycle"),
    (("lifecycle",), "30d", "lifecycle"),
    (("lifecycle",), ["1d"], "lifecycle"),
    (("lifecycle", "grace"), "1d", "lifecycle.grace"),
    (("lifecycle", "new_window"), DELETE, "lifecycle.new_window"),
    (("lifecycle", "silent_after"), DELETE, "lifecycle.silent_after"),
    (("lifecycle", "churn_after"), DELETE, "lifecycle.churn_after"),
    (("lifecycle", "dead_after"), DELETE, "lifecycle.dead_after"),
    (("lifecycle", "silent_after"), "soon", "lifecycle.silent_after"),
    (("lifecycle", "silent_after"), "3 days", "lifecycle.silent_after"),
    (("lifecycle", "silent_after"), "-3d", "lifecycle.silent_after"),
    (("lifecycle", "silent_after"), -5, "lifecycle.silent_after"),
    (("lifecycle", "silent_after"), True, "lifecycle.silent_after"),
    (("lifecycle", "silent_after"), None, "lifecycle.silent_after"),
    (("lifecycle", "silent_after"), ["2d"], "lifecycle.silent_after"),
    (("lifecycle", "silent_after"), {"d": 2}, "lifecycle.silent_after"),
    (("lifecycle", "silent_after"), float("nan"), "lifecycle.silent_after"),
    (("lifecycle", "silent_after"), float("inf"), "lifecycle.silent_after"),
    (("lifecycle", "new_window"), "0d", "lifecycle.new_window"),
    (("lifecycle", "new_window"), 0, "lifecycle.new_window"),
    (("lifecycle", "dead_after"), "0.1ms", "lifecycle.dead_after"),
    # ordering: new_window <= silent_after < churn_after < dead_after
    (("lifecycle", "new_window"), "3d", "lifecycle.new_window"),
    (("lifecycle", "churn_after"), "2d", "lifecycle.churn_after"),
    (("lifecycle", "churn_after"), "1d", "lifecycle.churn_after"),
    (("lifecycle", "dead_after"), "5d", "lifecycle.dead_after"),
    (("lifecycle", "dead_after"), "4d", "lifecycle.dead_after"),
    # funnel
    (("funnel",), DELETE, "funnel"),
    (("funnel",), [], "funnel"),
    (("funnel",), {"name": "visit", "event": "visit"}, "funnel"),
    (("funnel",), "visit", "funnel"),
    (("funnel", 1), "order", "funnel[1]"),
    (("funnel", 1), ["order"], "funnel[1]"),
    (("funnel", 1, "colour"), "red", "funnel[1].colour"),
    (("funnel", 1, "name"), DELETE, "funnel[1].name"),
    (("funnel", 1, "name"), "First Order", "funnel[1].name"),
    (("funnel", 1, "name"), 7, "funnel[1].name"),
    (("funnel", 1, "name"), "visit", "funnel[1].name"),  # used twice
    (("funnel", 1, "name"), "first_order\n", "funnel[1].name"),
    (("funnel", 1, "event"), DELETE, "funnel[1].event"),
    (("funnel", 1, "event"), "an order", "funnel[1].event"),
    (("funnel", 1, "event"), "", "funnel[1].event"),
    (("funnel", 1, "event"), "o" * 65, "funnel[1].event"),
    (("funnel", 1, "event"), ["order"], "funnel[1].event"),
    (("funnel", 1, "event"), "order\n", "funnel[1].event"),
    (("funnel", 1, "nth"), 0, "funnel[1].nth"),
    (("funnel", 1, "nth"), -1, "funnel[1].nth"),
    (("funnel", 1, "nth"), 1001, "funnel[1].nth"),
    (("funnel", 1, "nth"), "2", "funnel[1].nth"),
    (("funnel", 1, "nth"), 1.5, "funnel[1].nth"),
    (("funnel", 1, "nth"), True, "funnel[1].nth"),
    (("funnel", 1, "nth"), None, "funnel[1].nth"),
    (("funnel", 2, "nth"), 1, "funnel[2]"),  # the 1st order is already funnel[1]
    # type lists
    (("activity_types",), "visit", "activity_types"),
    (("activity_types",), ["visit", 3], "activity_types"),
    (("activity_types",), ["a visit"], "activity_types"),
    (("activity_types",), ["visit\n"], "activity_types"),
    (("activity_types",), {"visit": 1}, "activity_types"),
    (("revenue_types",), "order", "revenue_types"),
    (("revenue_types",), [None], "revenue_types"),
    # cohort retention days
    (("retention_days",), [], "retention_days"),
    (("retention_days",), 7, "retention_days"),
    (("retention_days",), [0], "retention_days"),
    (("retention_days",), [3651], "retention_days"),
    (("retention_days",), [1, 1], "retention_days"),
    (("retention_days",), [True], "retention_days"),
    (("retention_days",), ["7"], "retention_days"),
    (("retention_days",), [[1]], "retention_days"),
    (("retention_days",), list(range(1, 18)), "retention_days"),
    # RFM scoring and channel quality weights
    (("rfm",), None, "rfm"),
    (("rfm",), [30], "rfm"),
    (("rfm", "colour"), 1, "rfm.colour"),
    (("rfm", "recency"), "soon", "rfm.recency"),
    (("rfm", "recency"), None, "rfm.recency"),
    (("rfm", "frequency"), 0, "rfm.frequency"),
    (("rfm", "frequency"), 1.5, "rfm.frequency"),
    (("rfm", "frequency"), True, "rfm.frequency"),
    (("rfm", "monetary"), 0, "rfm.monetary"),
    (("rfm", "monetary"), -5, "rfm.monetary"),
    (("rfm", "monetary"), "500", "rfm.monetary"),
    (("rfm", "monetary"), float("nan"), "rfm.monetary"),
    (("rfm", "monetary"), float("inf"), "rfm.monetary"),
    (("channel_quality",), [], "channel_quality"),
    (("channel_quality",), {"weights": [1]}, "channel_quality"),
    (("channel_quality",), {"weights": {}, "extra": 1}, "channel_quality"),
    (("channel_quality", "weights", "beauty"), 1, "channel_quality.weights.beauty"),
    (("channel_quality", "weights", "retention"), -1, "channel_quality.weights.retention"),
    (("channel_quality", "weights", "retention"), "1", "channel_quality.weights.retention"),
    (("channel_quality", "weights", "retention"), True, "channel_quality.weights.retention"),
    (("channel_quality", "weights", "retention"), float("nan"), "channel_quality.weights.retention"),
    (("channel_quality", "weights", "retention"), float("inf"), "channel_quality.weights.retention"),
    # keys that are not strings (YAML allows them) are unknown fields too
    ((1,), "x", "1"),
    (("lifecycle", 7), "1d", "lifecycle.7"),
    (("funnel", 1, 2), 3, "funnel[1].2"),
    (("rfm", None), 1, "rfm.None"),
]


@pytest.mark.parametrize(("path", "value", "field"), INVALID, ids=[f"{p}={v!r}" for p, v, _ in INVALID])
def test_every_invalid_profile_fails_naming_the_field(path: tuple[Any, ...], value: Any, field: str) -> None:
    with pytest.raises(ProfileError) as info:
        parse_profile(with_change(path, value), source="profile shop.yaml")
    message = str(info.value)
    assert message.startswith("profile shop.yaml: ")
    assert f" {field}" in message or f"{field}:" in message


@pytest.mark.parametrize("doc", [None, [], "name: shop", 42])
def test_the_top_level_must_be_a_mapping(doc: Any) -> None:
    with pytest.raises(ProfileError, match="top level"):
        parse_profile(doc)


def test_a_profile_error_is_a_value_error() -> None:
    assert issubclass(ProfileError, ValueError)


def test_a_missing_file_or_unknown_name_fails(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="neither a built-in"):
        load_profile("no_such_profile")
    with pytest.raises(ProfileError, match="neither a built-in"):
        load_profile(str(tmp_path / "missing.yaml"))


def test_unparseable_files_fail_naming_the_file(tmp_path: Path) -> None:
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("name: [unclosed\n")
    with pytest.raises(ProfileError, match=r"bad\.yaml"):
        load_profile(str(bad_yaml))
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("name = \n")
    with pytest.raises(ProfileError, match=r"bad\.toml"):
        load_profile(str(bad_toml))
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('name = "shop"\n[lifecycle]\nnew_window = "1d"\n')
    with pytest.raises(ProfileError, match=r"wrong\.toml: lifecycle\.silent_after"):
        load_profile(str(wrong))
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ProfileError, match="top level"):
        load_profile(str(empty))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, 20), min_size=4, max_size=4))
def test_the_threshold_ordering_rule(hours: list[int]) -> None:
    nw, silent, churn, dead = (h * HOUR for h in hours)
    doc = with_change(
        ("lifecycle",),
        {
            "new_window": f"{hours[0]}h",
            "silent_after": silent,
            "churn_after": churn,
            "dead_after": f"{hours[3]}h",
        },
    )
    if nw <= silent < churn < dead:
        assert parse_profile(doc).thresholds == Thresholds(nw, silent, churn, dead)
    else:
        with pytest.raises(ProfileError, match=r"lifecycle\.(new_window|churn_after|dead_after)"):
            parse_profile(doc)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)

PATHS: list[tuple[Any, ...]] = [
    ("name",),
    ("description",),
    ("lifecycle",),
    ("lifecycle", "new_window"),
    ("lifecycle", "silent_after"),
    ("lifecycle", "churn_after"),
    ("lifecycle", "dead_after"),
    ("activity_types",),
    ("revenue_types",),
    ("funnel",),
    ("funnel", 0),
    ("funnel", 1, "name"),
    ("funnel", 1, "event"),
    ("funnel", 2, "nth"),
    ("retention_days",),
    ("rfm",),
    ("rfm", "recency"),
    ("rfm", "monetary"),
    ("channel_quality",),
    ("channel_quality", "weights"),
    ("channel_quality", "weights", "retention"),
    (1,),
    ("lifecycle", 2.5),
    ("funnel", 0, None),
]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(PATHS), json_values), min_size=1, max_size=3))
def test_any_document_gives_a_profile_or_a_profile_error(changes: list[tuple[tuple[Any, ...], Any]]) -> None:
    doc: Any = valid()
    for path, value in changes:
        node = doc
        try:
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = copy.deepcopy(value)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change replaced the container
    try:
        profile = parse_profile(doc)
    except ProfileError:
        return
    t = profile.thresholds
    assert 0 < t.new_window <= t.silent_after < t.churn_after < t.dead_after
    assert profile.funnel and all(1 <= s.nth <= 1000 for s in profile.funnel)


def test_identity_messages_are_not_activity_unless_the_profile_says_so() -> None:
    from service.core.profile import parse_profile as _parse

    lc = {"new_window": "1d", "silent_after": "2d", "churn_after": "5d", "dead_after": "12d"}
    base = {"lifecycle": lc, "funnel": [{"name": "registered", "event": "register"}]}
    every = _parse({"name": "every", **base})
    assert every.activity_types is None
    assert every.is_activity("visit") and every.is_activity("video_played")
    assert not every.is_activity("identify") and not every.is_activity("alias")
    told = _parse({"name": "told", **base, "non_activity_types": ["alias"]})
    assert told.is_activity("identify") and not told.is_activity("alias")
    listed = _parse({"name": "listed", **base, "activity_types": ["visit", "identify"]})
    assert listed.is_activity("identify")
