"""Durations as operators write them: `<number><unit>` in milliseconds, exact, and nothing else."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.core.durations import DAY_MS, DurationError, format_duration, parse_duration

UNITS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
SMALL_TO_LARGE = ("ms", "s", "m", "h", "d", "w")


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("250ms", 250),
        ("45s", 45_000),
        ("90m", 90 * 60_000),
        ("12h", 12 * 3_600_000),
        ("30d", 30 * DAY_MS),
        ("2w", 14 * DAY_MS),
        ("0d", 0),
        ("1.5h", 5_400_000),
        ("0.5d", DAY_MS // 2),
        ("4.35s", 4_350),  # exact, not 4349 from 4.35 * 1000 in binary floating point
        ("1.005s", 1_005),
        ("0.0005s", 0),  # below a millisecond: truncated
        (" 30d ", 30 * DAY_MS),
        ("30 d", 30 * DAY_MS),
        ("007h", 7 * 3_600_000),
    ],
)
def test_parses_the_spellings_operators_use(text: str, ms: int) -> None:
    assert parse_duration(text) == ms


def test_bare_numbers_are_already_milliseconds() -> None:
    assert parse_duration(0) == 0
    assert parse_duration(86_400_000) == DAY_MS
    assert parse_duration(1.9) == 1
    assert parse_duration(10**20) == 10**20


@pytest.mark.parametrize(
    "bad",
    [
        "",
        " ",
        "d",
        "30",
        "30x",
        "30D",
        "30 days",
        "-3d",
        "+3d",
        "3d4h",
        "1e3s",
        ".5h",
        "5.h",
        "1,5h",
        "inf d",
        "nan",
        -1,
        -0.5,
        True,
        False,
        float("nan"),
        float("inf"),
        float("-inf"),
        None,
        [1],
        {"d": 1},
        b"30d",
    ],
)
def test_anything_else_is_a_duration_error(bad: Any) -> None:
    with pytest.raises(DurationError):
        parse_duration(bad)


def test_a_duration_error_is_a_value_error() -> None:
    assert issubclass(DurationError, ValueError)


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0ms"),
        (1, "1ms"),
        (1_500, "1500ms"),
        (60_000, "1m"),
        (5_400_000, "90m"),
        (DAY_MS, "1d"),
        (7 * DAY_MS, "1w"),
        (30 * DAY_MS, "30d"),
        (14 * DAY_MS, "2w"),
        (36 * 3_600_000, "36h"),
    ],
)
def test_formats_in_the_largest_unit_that_divides(ms: int, text: str) -> None:
    assert format_duration(ms) == text


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**15))
def test_format_then_parse_is_the_identity(ms: int) -> None:
    assert parse_duration(format_duration(ms)) == ms


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**15))
def test_format_is_the_shortest_exact_spelling(ms: int) -> None:
    text = format_duration(ms)
    unit = next(
        u for u in sorted(UNITS, key=len, reverse=True) if text.endswith(u) and text[: -len(u)].isdigit()
    )
    number = int(text[: -len(unit)])
    assert number * UNITS[unit] == ms
    larger = SMALL_TO_LARGE[SMALL_TO_LARGE.index(unit) + 1 :]
    assert ms == 0 or all(ms % UNITS[u] for u in larger)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**6), st.sampled_from(SMALL_TO_LARGE))
def test_parse_then_format_normalises_to_the_largest_unit(n: int, unit: str) -> None:
    ms = parse_duration(f"{n}{unit}")
    assert ms == n * UNITS[unit]
    assert parse_duration(format_duration(ms)) == ms


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(1, 7), st.sampled_from(SMALL_TO_LARGE))
def test_decimal_fractions_are_exact(whole: int, frac: int, digits: int, unit: str) -> None:
    number = f"{whole}.{frac:0{digits}d}"
    assert parse_duration(f"{number}{unit}") == int(Decimal(number) * UNITS[unit])


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.text(max_size=12),
        st.from_regex(r"\A\s?[0-9]{1,30}(\.[0-9]{0,20})?\s?(ms|s|m|h|d|w|x)?\s?\Z"),
        st.floats(),
        st.integers(),
        st.none(),
        st.booleans(),
    )
)
def test_parsing_yields_milliseconds_or_a_duration_error(value: Any) -> None:
    try:
        ms = parse_duration(value)
    except DurationError:
        return
    assert isinstance(ms, int) and ms >= 0
