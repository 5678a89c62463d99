"""Identify traits on the user: only the profile's named scalars, null removes, the record
layout with traits reads back exactly (alongside every older layout), and an identify
before the user's first activity finds no user."""

from __future__ import annotations

from importlib import resources
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from service.core.batch import apply_events
from service.core.events import Event
from service.core.profile import ProfileError, load_profile, parse_profile
from service.core.records import PendingTrigger, UserRecord
from service.core.traits import MAX_TRAIT_TEXT, set_traits
from tests.unit.test_batch import PROFILE, T0

DAILY = yaml.safe_load(resources.files("service").joinpath("profiles", "daily_app.yaml").read_text())
NAMES = frozenset({"plan", "country", "seats"})


def test_named_scalars_are_kept_null_removes_the_rest_is_ignored() -> None:
    rec = UserRecord(T0, T0, T0)
    set_traits(rec, {"plan": "pro", "country": "DE", "email": "x@y", "seats": 3, "nested": {}}, NAMES)
    assert rec.traits == {"plan": "pro", "country": "DE", "seats": 3}
    set_traits(rec, {"plan": None, "seats": [1], "country": "x" * 1000}, NAMES)
    assert rec.traits == {"country": "x" * MAX_TRAIT_TEXT, "seats": 3}
    set_traits(rec, "not an object", NAMES)
    set_traits(rec, {"seats": float("nan")}, NAMES)
    assert rec.traits["seats"] == 3


traits = st.dictionaries(
    st.sampled_from(sorted(NAMES)),
    st.text(max_size=5)
    | st.integers(-(2**40), 2**40)
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False),
    max_size=3,
)


@given(traits, st.integers(0, 1 << 70), st.booleans())
def test_records_with_traits_pack_and_unpack_losslessly(t: dict[str, Any], days: int, pending: bool) -> None:
    rec = UserRecord(T0, T0, T0, days=days, traits=t)
    if pending:
        rec.pending = [PendingTrigger(T0 + 1, "id", "onboarding", T0, {"tier": "x"})]
    assert UserRecord.unpack(rec.pack()) == rec


def test_the_profile_names_the_traits_and_bounds_them() -> None:
    assert load_profile("daily_app").traits == {"plan", "country"}
    with pytest.raises(ProfileError, match="traits"):
        parse_profile({**DAILY, "traits": ["a b"]})
    with pytest.raises(ProfileError, match="traits"):
        parse_profile({**DAILY, "traits": [f"t{i}" for i in range(33)]})


def test_identify_sets_traits_of_a_known_user_only() -> None:
    profile = load_profile("daily_app")
    identify = {"traits": {"plan": "free"}}
    first = apply_events({}, [Event("1", "u", "identify", T0, properties=identify)], T0, profile)
    assert first.records == {}  # no activity yet: no user to keep them on
    later = apply_events(
        {},
        [
            Event("2", "u", "visit", T0 + 1),
            Event("3", "u", "identify", T0 + 2, properties={"traits": {"plan": "pro", "email": "x@y"}}),
        ],
        T0,
        profile,
    )
    rec = later.records["u"]
    assert rec.traits == {"plan": "pro"}
    assert rec.last_active == T0 + 1  # identify is not activity in this profile
    assert rec.to_json()["traits"] == {"plan": "pro"}
    plain = apply_events(
        {}, [Event("4", "v", "visit", T0), Event("5", "v", "identify", T0, properties=identify)], T0, PROFILE
    )
    assert plain.records["v"].traits == {}  # a profile without traits keeps none
