"""Profiles: the built-ins load, files load, and every mistake names its field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.core.durations import DurationError, format_duration, parse_duration
from service.core.profile import BUILTIN_PROFILES, ProfileError, load_profile, parse_profile

DAY = 86_400_000


def base() -> dict[str, Any]:
    return {
        "name": "shop",
        "lifecycle": {"new_window": "7d", "silent_after": "14d", "churn_after": "60d", "dead_after": "180d"},
        "funnel": [{"name": "visit", "event": "visit"}, {"name": "repurchase", "event": "order", "nth": 2}],
    }


@pytest.mark.parametrize("name", BUILTIN_PROFILES)
def test_builtin_profiles_load(name: str) -> None:
    profile = load_profile(name)
    t = profile.thresholds
    assert t.new_window <= t.silent_after < t.churn_after < t.dead_after
    assert profile.funnel


def test_insurance_is_low_frequency_and_daily_app_is_not() -> None:
    assert load_profile("insurance").thresholds.silent_after == 30 * DAY
    assert load_profile("insurance").thresholds.dead_after == 365 * DAY
    assert load_profile("daily_app").thresholds.silent_after == 3 * DAY
    assert [s.nth for s in load_profile("fintech").funnel if s.name == "repurchase"] == [2]


def test_yaml_and_toml_files_load(tmp_path: Path) -> None:
    yaml_file = tmp_path / "p.yaml"
    yaml_file.write_text(
        "name: shop\nlifecycle: {new_window: 7d, silent_after: 14d, churn_after: 60d, dead_after: 180d}\n"
        "activity_types: [visit, order]\nfunnel:\n  - {name: visit, event: visit}\n"
    )
    toml_file = tmp_path / "p.toml"
    toml_file.write_text(
        'name = "shop"\n[lifecycle]\nnew_window = "7d"\nsilent_after = "14d"\nchurn_after = "60d"\n'
        'dead_after = "180d"\n[[funnel]]\nname = "visit"\nevent = "visit"\n'
    )
    a, b = load_profile(str(yaml_file)), load_profile(str(toml_file))
    assert a.thresholds == b.thresholds
    assert a.activity_types == frozenset({"visit", "order"}) and b.activity_types is None
    assert a.is_activity("visit") and not a.is_activity("message_delivered") and b.is_activity("anything")


def _with(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    doc = base()
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("lifecycle", "silent_after"), "soon", "lifecycle.silent_after"),
        (("lifecycle", "dead_after"), KeyError, "lifecycle.dead_after"),
        (("lifecycle", "churn_after"), "10d", "lifecycle.churn_after"),
        (("lifecycle", "new_window"), "20d", "lifecycle.new_window"),
        (("lifecycle", "dead_after"), "50d", "lifecycle.dead_after"),
        (("lifecycle", "silent_afer"), "1d", "lifecycle.silent_afer"),
        (("funnel", 1, "nth"), 0, "funnel[1].nth"),
        (("funnel", 1, "nth"), "2", "funnel[1].nth"),
        (("funnel", 0, "event"), "has space", "funnel[0].event"),
        (("funnel", 1, "name"), "visit", "funnel[1].name"),
        (("funnel",), [], "funnel"),
        (("activity_types",), "visit", "activity_types"),
        (("lifecycles",), {}, "lifecycles"),
        (("name",), "Bad Name", "name"),
    ],
)
def test_invalid_profiles_name_the_field(path: tuple[Any, ...], value: Any, field: str) -> None:
    with pytest.raises(ProfileError, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_profile(_with(path, value))


def test_unknown_profile_name_or_path() -> None:
    with pytest.raises(ProfileError, match="neither a built-in"):
        load_profile("no-such-profile")


@given(st.integers(1, 10_000), st.sampled_from(["s", "m", "h", "d", "w"]))
def test_durations_round_trip(n: int, unit: str) -> None:
    ms = parse_duration(f"{n}{unit}")
    assert parse_duration(format_duration(ms)) == ms


@pytest.mark.parametrize("bad", ["", "10", "d", "10x", "-1d", "1.5.2h", True])
def test_bad_durations(bad: Any) -> None:
    with pytest.raises(DurationError):
        parse_duration(bad)
