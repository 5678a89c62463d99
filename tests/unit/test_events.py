"""Decoding Kafka message values: one event or an envelope; bad input is a value, never an exception."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.core.events import (
    MAX_ID_LEN,
    MAX_TS_MS,
    MIN_TS_MS,
    Event,
    Rejected,
    TimeBounds,
    decode_message,
    encode_events,
    parse_ts,
    validate_event,
)

T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z
FIELDS = ("event_id", "user_id", "type", "ts", "channel", "amount", "properties")


def ev(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"event_id": "e1", "user_id": "u1", "type": "visit", "ts": T0}
    doc.update(over)
    return {k: v for k, v in doc.items() if v is not DROP}


DROP = object()


def one(doc: Any, **kwargs: Any) -> Event | Rejected:
    """Decode one single-event message; exactly one event or one rejection comes out."""
    value = orjson.dumps(doc)
    events, rejected = decode_message(value, **kwargs)
    assert len(events) + len(rejected) == 1
    if rejected:
        assert rejected[0].raw == value and rejected[0].index is None and rejected[0].reason
        return rejected[0]
    return events[0]


# --- valid events ----------------------------------------------------------------------------


def test_a_minimal_event() -> None:
    assert one(ev()) == Event("e1", "u1", "visit", T0)


def test_an_event_with_every_field() -> None:
    doc = ev(channel="ads", amount=12, properties={"policy_id": "p1", "n": [1, 2]})
    got = one(doc)
    assert got == Event("e1", "u1", "visit", T0, "ads", 12.0, {"policy_id": "p1", "n": [1, 2]})
    assert isinstance(got, Event) and isinstance(got.amount, float)
    assert got.to_json() == {**doc, "amount": 12.0}


def test_optional_fields_may_be_null() -> None:
    assert one(ev(channel=None, amount=None, properties=None)) == Event("e1", "u1", "visit", T0)


@pytest.mark.parametrize("n", [1, MAX_ID_LEN])
def test_ids_of_1_to_128_characters(n: int) -> None:
    got = one(ev(event_id="é" * n, user_id="用" * n))
    assert isinstance(got, Event) and len(got.event_id) == n and len(got.user_id) == n


def test_an_envelope_carries_several_events_in_order() -> None:
    docs = [ev(event_id=f"e{i}", user_id=f"u{i % 3}", ts=T0 + i) for i in range(5)]
    events, rejected = decode_message(encode_events(docs))
    assert rejected == []
    assert [e.to_json() for e in events] == docs


def test_an_envelope_of_one_event_is_an_envelope() -> None:
    events, rejected = decode_message(b"[" + orjson.dumps(ev()) + b"]")
    assert rejected == [] and events == [Event("e1", "u1", "visit", T0)]


def test_whitespace_around_the_value_is_fine() -> None:
    events, rejected = decode_message(b"  \n" + orjson.dumps(ev()) + b"\n ")
    assert rejected == [] and len(events) == 1


# --- timestamps --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2024-01-01T00:00:00Z", 1_704_067_200_000),
        ("2024-01-01T00:00:00+00:00", 1_704_067_200_000),
        ("2024-01-01T00:00:00-00:00", 1_704_067_200_000),
        ("2024-01-01T05:30:00+05:30", 1_704_067_200_000),
        ("2023-12-31T19:00:00-05:00", 1_704_067_200_000),
        ("2024-01-01T00:00:00.5Z", 1_704_067_200_500),
        ("2024-01-01T00:00:00.123Z", 1_704_067_200_123),
        ("2024-01-01T00:00:00.123456Z", 1_704_067_200_123),
        ("2024-01-01T00:00:00.999999+01:00", 1_704_063_600_999),
        ("2000-01-01T00:00:00Z", MIN_TS_MS),
        ("2100-01-01T00:00:00Z", MAX_TS_MS),
        ("2024-02-29T23:59:59.999Z", 1_709_251_199_999),
    ],
)
def test_rfc3339_with_offsets_and_fractions_gives_exact_epoch_ms(text: str, ms: int) -> None:
    assert parse_ts(text) == ms
    assert one(ev(ts=text)) == Event("e1", "u1", "visit", ms)


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30)),
    st.integers(-14 * 60, 14 * 60),
    st.sampled_from(["seconds", "milliseconds", "microseconds", "auto"]),
)
def test_any_rfc3339_instant_parses_to_its_epoch_ms(naive: datetime, offset_min: int, spec: str) -> None:
    aware = naive.replace(tzinfo=timezone(timedelta(minutes=offset_min)))
    text = aware.isoformat(timespec=spec)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    want = (aware.replace(microsecond=_kept_micros(aware.microsecond, spec)) - epoch) // timedelta(
        milliseconds=1
    )
    assert parse_ts(text) == want
    if offset_min == 0:
        assert parse_ts(text.replace("+00:00", "Z")) == want


def _kept_micros(us: int, spec: str) -> int:
    return {"seconds": 0, "milliseconds": us - us % 1000}.get(spec, us)


@settings(max_examples=300, deadline=None)
@given(st.integers(MIN_TS_MS, MAX_TS_MS))
def test_epoch_milliseconds_are_taken_as_they_are(ms: int) -> None:
    assert parse_ts(ms) == ms
    assert one(ev(ts=ms)) == Event("e1", "u1", "visit", ms)
    iso = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
    assert parse_ts(iso) == ms  # the same instant written as RFC 3339


def test_float_epoch_milliseconds_truncate() -> None:
    assert one(ev(ts=T0 + 0.75)) == Event("e1", "u1", "visit", T0)


# --- rejections ---------------------------------------------------------------------------------


REJECTED: list[tuple[str, dict[str, Any], str]] = [
    ("unknown field", ev(colour="red"), "unknown field(s): colour"),
    ("two unknown fields", ev(b=1, a=2), "unknown field(s): a, b"),
    ("missing event_id", ev(event_id=DROP), "event_id"),
    ("empty event_id", ev(event_id=""), "event_id"),
    ("oversize event_id", ev(event_id="e" * (MAX_ID_LEN + 1)), "event_id"),
    ("numeric event_id", ev(event_id=7), "event_id"),
    ("null event_id", ev(event_id=None), "event_id"),
    ("missing user_id", ev(user_id=DROP), "user_id"),
    ("empty user_id", ev(user_id=""), "user_id"),
    ("oversize user_id", ev(user_id="ü" * (MAX_ID_LEN + 1)), "user_id"),
    ("list user_id", ev(user_id=["u1"]), "user_id"),
    ("missing type", ev(type=DROP), "type"),
    ("numeric type", ev(type=3), "type"),
    ("empty type", ev(type=""), "type"),
    ("type with a newline", ev(type="page\nview"), "type"),
    ("type with a control character", ev(type="a\x07b"), "type"),
    ("type with a newline", ev(type="visit\n"), "type"),
    ("oversize type", ev(type="t" * 129), "type"),
    ("missing ts", ev(ts=DROP), "ts is required"),
    ("null ts", ev(ts=None), "ts is required"),
    ("bool ts", ev(ts=True), "ts must be"),
    ("list ts", ev(ts=[T0]), "ts is required"),
    ("words ts", ev(ts="yesterday"), "RFC 3339"),
    ("naive ts", ev(ts="2024-01-01T00:00:00"), "UTC offset"),
    ("naive ts with fraction", ev(ts="2024-01-01T00:00:00.250"), "UTC offset"),
    ("date-only ts", ev(ts="2024-01-01"), "RFC 3339"),
    ("date-only ts with offset-like tail", ev(ts="2024-01-01+01:00"), "RFC 3339"),
    ("time-only ts", ev(ts="12:00:00Z"), "RFC 3339"),
    ("impossible date", ev(ts="2023-02-29T00:00:00Z"), "RFC 3339"),
    ("impossible offset", ev(ts="2024-01-01T00:00:00+25:00"), "RFC 3339"),
    ("overlong ts", ev(ts="2024-01-01T00:00:00.000000000000000000000Z"), "too long"),
    ("ts string of digits", ev(ts=str(T0)), "RFC 3339"),
    ("ts before 2000", ev(ts=MIN_TS_MS - 1), "LIFECYCLE_MIN_EVENT_TIME"),
    ("ts in seconds", ev(ts=T0 // 1000), "before the earliest accepted event time 2000-01-01T00:00:00Z"),
    ("negative ts", ev(ts=-1), "LIFECYCLE_MIN_EVENT_TIME"),
    ("ts after 2100", ev(ts=MAX_TS_MS + 1), "LIFECYCLE_MAX_FUTURE"),
    ("rfc ts after 2100", ev(ts="2100-01-01T00:00:00.001Z"), "LIFECYCLE_MAX_FUTURE"),
    ("ts in microseconds", ev(ts=T0 * 1000), "LIFECYCLE_MAX_FUTURE"),
    ("absurd ts", ev(ts=10**17), "plausible"),
    ("huge ts", ev(ts=2**64 - 1), "plausible"),
    ("huge float ts", ev(ts=1e300), "plausible"),
    ("numeric channel", ev(channel=5), "channel"),
    ("empty channel", ev(channel=""), "channel"),
    ("channel with a space", ev(channel="paid ads"), "channel"),
    ("channel with a pipe", ev(channel="a|b"), "channel"),
    ("channel with a newline", ev(channel="ads\n"), "channel"),
    ("oversize channel", ev(channel="c" * 65), "channel"),
    ("string amount", ev(amount="12"), "amount must be a number"),
    ("true amount", ev(amount=True), "amount must be a number"),
    ("false amount", ev(amount=False), "amount must be a number"),
    ("list amount", ev(amount=[1]), "amount must be a number"),
    ("object amount", ev(amount={"v": 1}), "amount must be a number"),
    ("oversize amount", ev(amount=1e13), "amount must be finite"),
    ("oversize negative amount", ev(amount=-1e13), "amount must be finite"),
    ("huge int amount", ev(amount=2**64 - 1), "amount must be finite"),
    ("list properties", ev(properties=[1]), "properties"),
    ("string properties", ev(properties="k=v"), "properties"),
]


@pytest.mark.parametrize(("doc", "reason"), [r[1:] for r in REJECTED], ids=[r[0] for r in REJECTED])
def test_each_kind_of_bad_event_is_rejected_with_its_reason(doc: dict[str, Any], reason: str) -> None:
    got = one(doc)
    assert isinstance(got, Rejected)
    assert reason in got.reason


def test_ts_outside_the_bounds_is_rejected_with_the_setting_that_moves_them() -> None:
    bounds = TimeBounds(T0 - 10, T0)
    assert isinstance(one(ev(ts=T0), bounds=bounds), Event)
    assert isinstance(one(ev(ts=T0 - 10), bounds=bounds), Event)
    late = one(ev(ts=T0 + 1), bounds=bounds)
    assert isinstance(late, Rejected) and "LIFECYCLE_MAX_FUTURE" in late.reason
    early = one(ev(ts=T0 - 11), bounds=bounds)
    assert isinstance(early, Rejected) and "LIFECYCLE_MIN_EVENT_TIME" in early.reason


def test_a_far_future_ts_is_named_in_the_reason_even_past_the_calendar() -> None:
    got = validate_event(ev(ts=9e15))
    assert isinstance(got, str) and "later than the latest accepted event time 2100" in got, got


def test_the_settings_bounds_follow_the_clock_and_the_earliest_time() -> None:
    from service.settings import Settings

    s = Settings(min_event_time="1995-01-01", max_future="1h")
    assert s.time_bounds(T0) == TimeBounds(788_918_400_000, T0 + 3_600_000)
    assert Settings().time_bounds(MAX_TS_MS).latest == MAX_TS_MS  # never past 2100
    with pytest.raises(ValueError, match="ISO 8601"):
        Settings(min_event_time="last tuesday")


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), float("-inf")],
)
def test_non_finite_numbers_are_rejected_when_they_get_past_json(value: float) -> None:
    # orjson refuses NaN and Infinity literals, so only a decoded dict can carry them
    assert "amount must be finite" in str(validate_event(ev(amount=value)))
    assert "plausible" in str(validate_event(ev(ts=value)))


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty message"),
        (None, "empty message"),
        (b"   ", "not JSON"),
        (b"{", "not JSON"),
        (b"{nope}", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b'{"event_id": "e1"} trailing', "not JSON"),
        (
            b'{"event_id": "e1", "user_id": "u1", "type": "visit", "ts": 1700000000000, "amount": NaN}',
            "not JSON",
        ),
        (
            b'{"event_id": "e1", "user_id": "u1", "type": "visit", "ts": 1700000000000, "amount": Infinity}',
            "not JSON",
        ),
        (b'{"event_id": "e1", "user_id": "u1", "type": "visit", "ts": 1e400}', "not JSON"),
        (b'{"event_id": "\\ud800", "user_id": "u1", "type": "visit", "ts": 1700000000000}', "not JSON"),
        (b"NaN", "not JSON"),
        (b"[]", "empty envelope"),
        (b"null", "neither an event object nor an array"),
        (b"42", "neither an event object nor an array"),
        (b'"visit"', "neither an event object nor an array"),
        (b"true", "neither an event object nor an array"),
    ],
)
def test_messages_that_are_not_events_are_rejected_whole(raw: bytes | None, reason: str) -> None:
    events, rejected = decode_message(raw)
    assert events == []
    assert len(rejected) == 1
    assert reason in rejected[0].reason
    assert rejected[0].raw == (raw or b"") and rejected[0].index is None


def test_a_bad_event_inside_an_envelope_is_rejected_alone_with_its_index() -> None:
    docs: list[Any] = [
        ev(event_id="e0"),
        ev(event_id="e1", amount="lots"),
        7,
        ev(event_id="e3"),
        None,
        [ev(event_id="nested")],
        ev(event_id="e6", ts="2024-01-01T00:00:00"),
        ev(event_id="e7", channel="ads"),
    ]
    events, rejected = decode_message(orjson.dumps(docs))
    assert [e.event_id for e in events] == ["e0", "e3", "e7"]
    assert [r.index for r in rejected] == [1, 2, 4, 5, 6]
    assert [orjson.loads(r.raw) for r in rejected] == [docs[i] for i in (1, 2, 4, 5, 6)]
    assert "amount" in rejected[0].reason
    assert all("not a JSON object" in r.reason for r in rejected[1:4])
    assert "UTC offset" in rejected[4].reason


# --- valid events round trip ------------------------------------------------------------------

tokens = st.from_regex(r"\A[A-Za-z0-9_.\-]{1,64}\Z")
ids = st.text(min_size=1, max_size=MAX_ID_LEN).filter(
    lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s)
)
json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=10)
json_values = st.recursive(
    json_scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)

valid_events = st.builds(
    Event,
    event_id=ids,
    user_id=ids,
    type=tokens,
    ts=st.integers(MIN_TS_MS, MAX_TS_MS),
    channel=st.none() | tokens.filter(lambda c: c != "-"),  # "-" is reserved: no channel
    amount=st.none() | st.floats(-1e12, 1e12, allow_nan=False),
    properties=st.none() | st.dictionaries(st.text(max_size=8), json_values, max_size=4),
)


@settings(max_examples=150, deadline=None)
@given(valid_events)
def test_a_valid_event_decodes_to_itself(event: Event) -> None:
    assert decode_message(orjson.dumps(event.to_json())) == ([event], [])


@settings(max_examples=50, deadline=None)
@given(st.lists(valid_events, min_size=1, max_size=5))
def test_an_envelope_of_valid_events_decodes_to_them_in_order(events: list[Event]) -> None:
    assert decode_message(encode_events([e.to_json() for e in events])) == (events, [])


# --- decoding never raises ----------------------------------------------------------------------


def _check_shape(value: bytes, events: list[Event], rejected: list[Rejected]) -> None:
    assert all(isinstance(e, Event) for e in events)
    assert all(isinstance(r, Rejected) and r.reason for r in rejected)
    for e in events:
        assert MIN_TS_MS <= e.ts <= MAX_TS_MS
        assert 0 < len(e.event_id) <= MAX_ID_LEN and 0 < len(e.user_id) <= MAX_ID_LEN
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        assert events == [] and len(rejected) == 1 and rejected[0].raw == value
        return
    if isinstance(doc, list) and doc:
        assert len(events) + len(rejected) == len(doc)
        indexes = [r.index for r in rejected if r.index is not None]
        assert len(indexes) == len(rejected)
        assert indexes == sorted(set(indexes)) and all(0 <= i < len(doc) for i in indexes)
    else:
        assert len(events) + len(rejected) == 1
        assert all(r.index is None and r.raw == value for r in rejected)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(value: bytes) -> None:
    events, rejected = decode_message(value)
    _check_shape(value, events, rejected)


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_arbitrary_json_never_raises(doc: Any) -> None:
    value = orjson.dumps(doc)
    events, rejected = decode_message(value)
    _check_shape(value, events, rejected)


near_events = st.dictionaries(
    st.sampled_from([*FIELDS, "extra"]),
    json_values
    | tokens
    | st.integers(MIN_TS_MS - 10, MAX_TS_MS + 10)
    | st.text(max_size=40)
    | st.datetimes(min_value=datetime(1999, 1, 1), max_value=datetime(2101, 1, 1)).map(
        lambda d: d.isoformat() + "Z"
    ),
    max_size=7,
)


@settings(max_examples=100, deadline=None)
@given(st.lists(near_events | json_values, max_size=6), st.booleans())
def test_near_events_never_raise(docs: list[Any], single: bool) -> None:
    value = orjson.dumps(docs[0] if single and docs else docs)
    events, rejected = decode_message(value)
    _check_shape(value, events, rejected)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=45), json_values, st.floats(), st.integers()))
def test_parse_ts_gives_milliseconds_or_a_reason(value: Any) -> None:
    got = parse_ts(value)
    assert isinstance(got, int | str)
    if isinstance(got, str):
        assert got


def test_the_no_channel_marker_is_not_a_channel() -> None:
    events, bad = decode_message(
        b'{"event_id": "e", "user_id": "u", "type": "visit", "ts": 1700000000000, "channel": "-"}'
    )
    assert events == [] and "reserved" in bad[0].reason
