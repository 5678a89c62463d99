"""Fuzzing the decoder, the validator and the collector's checks: bad input is a value, never a crash.

Whatever bytes arrive, `decode_message` returns events and rejections (never raises),
accounts for every item of an envelope, and gives a reason for each rejection. An
accepted event re-encodes (the worker re-routes misrouted events and the collector
writes envelopes) to the same event, and the pure core applies it without raising.
`LIFECYCLE_FAULTS=full` runs twenty times the examples.
"""

from __future__ import annotations

import gzip
import json
import math
from datetime import datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.api.collector import CollectorError, decode_body, validate_batch
from service.core.batch import apply_events
from service.core.events import (
    DEFAULT_BOUNDS,
    MAX_AMOUNT,
    MAX_ID_LEN,
    MAX_TS_MS,
    MIN_TS_MS,
    Event,
    decode_message,
    validate_event,
)
from service.core.partitioning import partition_for
from service.core.profile import load_profile
from service.core.records import UserRecord
from tests.faults.hostile import HOSTILE_ID_PARTS, RAW_BAD
from tests.faults.scale import full

EXAMPLES = 20_000 if full() else 500
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = load_profile("daily_app")
TOKEN = r"[A-Za-z0-9_.\-]{1,64}"

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=50)
    | st.sampled_from(HOSTILE_ID_PARTS)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
)


def _nested(depth: int) -> Any:
    doc: Any = "x"
    for i in range(depth):
        doc = {"d": doc} if i % 2 else [doc]
    return doc


ids = (
    st.text(min_size=1, max_size=MAX_ID_LEN)
    | st.builds(lambda parts: "".join(parts)[:MAX_ID_LEN] or "{", st.lists(st.sampled_from(HOSTILE_ID_PARTS)))
    | st.text(min_size=MAX_ID_LEN + 1, max_size=MAX_ID_LEN + 50)
    | st.just("")
    | json_values
)
tokens = st.from_regex(TOKEN, fullmatch=True) | st.text(max_size=70) | json_values
timestamps = (
    st.integers(min_value=MIN_TS_MS - 10**6, max_value=MAX_TS_MS + 10**6)
    | st.integers()
    | st.floats()
    | st.datetimes().map(lambda d: d.isoformat())
    | st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat())
    | st.text(max_size=45)
    | json_values
)
amounts = (
    st.floats() | st.integers() | st.floats(min_value=-2 * MAX_AMOUNT, max_value=2 * MAX_AMOUNT) | json_values
)
properties = (
    st.dictionaries(st.text(max_size=10), json_values, max_size=5)
    | (st.integers(min_value=0, max_value=40) | st.integers(min_value=250, max_value=260)).map(
        lambda d: {"deep": _nested(d)}
    )
    | st.fixed_dictionaries(
        {"policy_id": st.text(max_size=140) | json_values, "policy_end": timestamps},
        optional={"trigger_id": json_values},
    )
    | json_values
)
valid_ids = st.text(min_size=1, max_size=MAX_ID_LEN) | st.builds(
    lambda parts: "".join(parts)[:MAX_ID_LEN], st.lists(st.sampled_from(HOSTILE_ID_PARTS), min_size=1)
)
valid_ts = st.integers(min_value=MIN_TS_MS, max_value=MAX_TS_MS) | st.datetimes(
    min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30), timezones=st.timezones()
).map(lambda d: d.isoformat())
valid_events = st.fixed_dictionaries(
    {
        "event_id": valid_ids,
        "user_id": valid_ids,
        "type": st.sampled_from(("visit", "register", "order", "renew", "verify"))
        | st.from_regex(TOKEN, fullmatch=True),
        "ts": valid_ts,
    },
    optional={
        "channel": st.from_regex(TOKEN, fullmatch=True).filter(lambda c: c != "-"),
        "amount": st.floats(min_value=-MAX_AMOUNT, max_value=MAX_AMOUNT) | st.integers(-1000, 1000),
        "properties": st.dictionaries(st.text(max_size=10), json_values, max_size=5)
        | st.fixed_dictionaries({"policy_id": st.text(max_size=140) | json_values, "policy_end": timestamps}),
    },
)
hostile_fields = {
    "event_id": ids,
    "user_id": ids,
    "type": tokens,
    "ts": timestamps,
    "channel": tokens,
    "amount": amounts,
    "properties": properties,
    "extra": json_values,
}


@st.composite
def event_docs(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event with none, one or a few fields replaced by hostile values (or removed)."""
    doc = draw(valid_events)
    for name in draw(st.lists(st.sampled_from(sorted(hostile_fields)), max_size=3)):
        if draw(st.booleans()) and name in doc:
            del doc[name]
        else:
            doc[name] = draw(hostile_fields[name])
    return doc


# Mostly plausible events with one or two hostile fields; now and then anything at all.
items = event_docs() | json_values


def _lenient(doc: Any) -> bytes:
    """JSON as a careless producer writes it: NaN/Infinity allowed (so not JSON), surrogates passed."""
    return json.dumps(doc, allow_nan=True).encode("utf-8", "surrogatepass")


def _check_event(ev: Event) -> None:
    """What every accepted event guarantees to the rest of the service."""
    assert 0 < len(ev.event_id) <= MAX_ID_LEN and 0 < len(ev.user_id) <= MAX_ID_LEN
    assert MIN_TS_MS <= ev.ts <= MAX_TS_MS and isinstance(ev.ts, int)
    assert ev.amount is None or (math.isfinite(ev.amount) and abs(ev.amount) <= MAX_AMOUNT)
    assert ev.properties is None or isinstance(ev.properties, dict)
    ev.user_id.encode()  # a key, a Redis field: must be valid UTF-8
    assert 0 <= partition_for(ev.user_id, 12) < 12
    again = validate_event(orjson.loads(orjson.dumps(ev.to_json())))
    assert again == ev


@FUZZ
@given(st.binary(max_size=300) | st.sampled_from(RAW_BAD))
def test_any_bytes_decode_without_raising(value: bytes) -> None:
    events, rejected = decode_message(value)
    assert all(r.reason for r in rejected)
    assert events or rejected
    for ev in events:
        _check_event(ev)


@FUZZ
@given(st.lists(items, max_size=60), st.booleans())
def test_every_item_of_a_hostile_envelope_is_accounted_for(docs: list[Any], single: bool) -> None:
    value = _lenient(docs[0] if single and docs else docs)
    events, rejected = decode_message(value)
    assert all(r.reason and r.raw is not None for r in rejected)
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        assert not events and len(rejected) == 1 and rejected[0].reason.startswith("not JSON")
        return
    if isinstance(parsed, list) and parsed:
        assert len(events) + len(rejected) == len(parsed)
        indexes = [r.index for r in rejected]
        assert indexes == sorted(set(indexes)) and all(
            i is not None and 0 <= i < len(parsed) for i in indexes
        )
        for r in rejected:
            assert r.index is not None
            assert not isinstance(
                validate_event(parsed[r.index]) if isinstance(parsed[r.index], dict) else "", Event
            )
    else:
        assert len(events) + len(rejected) == 1
    for ev in events:
        _check_event(ev)
    records = apply_events({}, events, 0, PROFILE).records
    for uid, rec in records.items():
        assert UserRecord.unpack(rec.pack()).first_seen == rec.first_seen, uid


@FUZZ
@given(st.lists(items, min_size=1, max_size=60))
def test_the_collector_lists_each_rejected_event_and_accepts_the_others(docs: list[Any]) -> None:
    body = _lenient(docs)
    try:
        accepted, rejected = validate_batch(body, 1000, DEFAULT_BOUNDS)
    except CollectorError as exc:  # the whole body refused: only for bodies that are not JSON
        assert exc.status == 400
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(body)
        return
    assert len(accepted) + len(rejected) == len(docs)
    assert all(r["reason"] for r in rejected)
    for user_id, raw in accepted:
        ev = validate_event(orjson.loads(raw))
        assert isinstance(ev, Event) and ev.user_id == user_id
        _check_event(ev)


@FUZZ
@given(st.binary(max_size=2000), st.sampled_from((None, "", "gzip", "GZIP ", "identity", "br", "x" * 100)))
def test_request_bodies_decode_or_are_refused_with_a_status(body: bytes, encoding: str | None) -> None:
    for candidate in (body, gzip.compress(body)):
        try:
            out = decode_body(candidate, encoding, 1024)
        except CollectorError as exc:
            assert exc.status in (400, 413, 415) and exc.detail
            continue
        assert len(out) <= 1024


def test_a_string_in_the_collectors_array_is_rejected_as_not_an_object_never_echoed() -> None:
    """A JSON string where an event should be is no event: its reason is the collector's own,
    never the string that was sent (which would echo input back as a reason, or be blank)."""
    accepted, rejected = validate_batch(b'["", "drop table", {"x": 1}]', 1000, DEFAULT_BOUNDS)
    assert accepted == []
    assert [r["reason"] for r in rejected[:2]] == ["not a JSON object", "not a JSON object"]
    assert rejected[2]["reason"] and rejected[2]["reason"] != "not a JSON object"
