"""Decoding message values: single events and envelopes; bad input becomes a value, never an exception."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.partitioner.default import murmur2 as kafka_murmur2

from service.core.events import MAX_TS_MS, Event, decode_message, parse_ts
from service.core.partitioning import partition_for

T0 = 1_700_000_000_000


def ev(**over: Any) -> dict[str, Any]:
    return {"event_id": "e1", "user_id": "u1", "type": "visit", "ts": T0, **over}


def test_a_single_event_and_an_envelope_decode_alike() -> None:
    single, bad = decode_message(orjson.dumps(ev(channel="ads", amount=3, properties={"k": 1})))
    assert bad == [] and single == [Event("e1", "u1", "visit", T0, "ads", 3.0, {"k": 1})]
    many, bad = decode_message(orjson.dumps([ev(), ev(event_id="e2")]))
    assert bad == [] and [e.event_id for e in many] == ["e1", "e2"]


def test_a_bad_event_in_an_envelope_is_rejected_alone() -> None:
    events, bad = decode_message(orjson.dumps([ev(), {"event_id": "x"}, 7, ev(event_id="e3")]))
    assert [e.event_id for e in events] == ["e1", "e3"]
    assert [(b.index, orjson.loads(b.raw)) for b in bad] == [(1, {"event_id": "x"}), (2, 7)]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"", "empty"),
        (b"{nope", "not JSON"),
        (b"[]", "empty envelope"),
        (b"42", "neither an event object"),
        (b"NaN", "not JSON"),
        (orjson.dumps(ev(extra=1)), "unknown field"),
        (orjson.dumps(ev(event_id="")), "event_id"),
        (orjson.dumps(ev(user_id="u" * 129)), "user_id"),
        (orjson.dumps(ev(user_id=5)), "user_id"),
        (orjson.dumps(ev(type="has space")), "type"),
        (orjson.dumps(ev(ts="yesterday")), "RFC 3339"),
        (orjson.dumps(ev(ts="2024-01-01T00:00:00")), "UTC offset"),
        (orjson.dumps(ev(ts="2024-01-01")), "RFC 3339"),
        (orjson.dumps(ev(ts=True)), "ts"),
        (orjson.dumps(ev(ts=1)), "outside the accepted range"),
        (orjson.dumps(ev(ts=MAX_TS_MS + 1)), "outside the accepted range"),
        (orjson.dumps(ev(amount="12")), "amount"),
        (orjson.dumps(ev(amount=True)), "amount"),
        (orjson.dumps(ev(amount=1e13)), "amount"),
        (orjson.dumps(ev(channel="a b")), "channel"),
        (orjson.dumps(ev(properties=[1])), "properties"),
    ],
)
def test_bad_input_is_a_rejection_with_a_reason(value: bytes, reason: str) -> None:
    events, bad = decode_message(value)
    assert events == [] and len(bad) == 1
    assert reason in bad[0].reason
    assert bad[0].raw == value


def test_future_events_are_rejected_against_the_given_bound() -> None:
    assert decode_message(orjson.dumps(ev(ts=T0 + 10)), max_ts=T0)[1][0].reason.startswith("ts")


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2023-11-14T22:13:20Z", T0),
        ("2023-11-14T22:13:20.123Z", T0 + 123),
        ("2023-11-15T06:13:20+08:00", T0),
        ("2023-11-14T22:13:20.999999+00:00", T0 + 999),
    ],
)
def test_rfc3339_timestamps_are_exact_to_the_millisecond(text: str, ms: int) -> None:
    assert parse_ts(text) == ms


def test_hostile_user_ids_are_ordinary_values() -> None:
    for uid in ["{0}", "a}b{c", "x:y", "with space", "line\nbreak", "中文ユーザー", "é" * 128]:
        events, bad = decode_message(orjson.dumps(ev(user_id=uid)))
        assert bad == [] and events[0].user_id == uid


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400)
@given(st.binary(max_size=300))
def test_decoding_never_raises_on_arbitrary_bytes(value: bytes) -> None:
    events, bad = decode_message(value)
    assert len(events) + len(bad) >= 1 or value.strip() in (b"",)


@settings(max_examples=400)
@given(json_values)
def test_decoding_never_raises_on_arbitrary_json(doc: Any) -> None:
    events, bad = decode_message(orjson.dumps(doc))
    assert all(isinstance(e, Event) for e in events)
    assert all(b.reason for b in bad)


@settings(max_examples=500)
@given(st.text(max_size=64), st.integers(1, 64))
def test_partitions_match_kafkas_default_partitioner(user_id: str, partitions: int) -> None:
    expected = (kafka_murmur2(user_id.encode()) & 0x7FFFFFFF) % partitions
    assert partition_for(user_id, partitions) == expected
