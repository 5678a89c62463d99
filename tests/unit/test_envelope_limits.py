"""Envelopes are bounded in events and bytes, and lose, duplicate or reorder nothing."""

from __future__ import annotations

from itertools import pairwise

import orjson
from hypothesis import given
from hypothesis import strategies as st

from service.core.envelopes import envelope_size, envelopes, split_values
from service.core.partitioning import partition_for

users = st.sampled_from([f"user-{i}" for i in range(12)])
items = st.lists(
    st.tuples(users, st.integers(0, 3000)).map(
        lambda t: (t[0], orjson.dumps({"user_id": t[0], "pad": "x" * t[1]}))
    ),
    max_size=60,
)


@given(items, st.integers(1, 20), st.integers(200, 20_000))
def test_every_envelope_fits_and_each_partition_keeps_its_order(
    batch: list[tuple[str, bytes]], max_events: int, max_bytes: int
) -> None:
    out = list(envelopes(batch, 4, max_events, max_bytes=max_bytes))
    got: dict[int, list[bytes]] = {}
    for partition, key, value in out:
        events = orjson.loads(value)
        assert len(value) == envelope_size(orjson.dumps(e) for e in events)
        assert len(events) <= max_events
        assert len(value) <= max_bytes or len(events) == 1  # only a lone event may exceed it
        assert {partition_for(e["user_id"], 4) for e in events} == {partition}
        assert key == events[0]["user_id"].encode()
        got.setdefault(partition, []).extend(orjson.dumps(e) for e in events)
    want: dict[int, list[bytes]] = {}
    for uid, raw in batch:
        want.setdefault(partition_for(uid, 4), []).append(raw)
    assert got == want


@given(st.lists(st.binary(min_size=1, max_size=500), max_size=50), st.integers(1, 10), st.integers(50, 2000))
def test_split_values_cuts_in_order_within_both_bounds(
    values: list[bytes], max_events: int, max_bytes: int
) -> None:
    runs = list(split_values(values, max_events, max_bytes))
    assert [v for run in runs for v in run] == values
    for run in runs:
        assert 1 <= len(run) <= max_events
        assert envelope_size(run) <= max_bytes or len(run) == 1
    for a, b in pairwise(runs):  # each cut was needed: the next value did not fit
        assert len(a) == max_events or envelope_size([*a, b[0]]) > max_bytes
