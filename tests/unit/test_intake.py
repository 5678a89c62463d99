"""`decode_batch` and `sort_batch`: every message and event of a batch lands in exactly one class."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from service.core.dedup import event_digest
from service.core.events import TimeBounds
from service.core.intake import DeadLetter, Decoded, Message, Sorted, decode_batch, sort_batch
from service.core.partitioning import partition_for

HOUR = 3_600_000
T0 = 1_700_006_400_000
PARTS = 4
USERS = [f"user-{i}" for i in range(40)]
OURS = [u for u in USERS if partition_for(u, PARTS) == 0]
THEIRS = [u for u in USERS if partition_for(u, PARTS) != 0]


def bucket(ts: int) -> int:
    return ts // HOUR


def event(eid: str, uid: str, ts: int = T0) -> dict[str, object]:
    return {"event_id": eid, "user_id": uid, "type": "visit", "ts": ts}


def msg(offset: int, *events: dict[str, object]) -> Message:
    value = orjson.dumps(events[0]) if len(events) == 1 else orjson.dumps(list(events))
    return (offset, b"k", value)


def sort(
    messages: list[Message], applied: int = -1, seen: set[bytes] | None = None, partition: int = 0
) -> tuple[Decoded, Sorted]:
    decoded = decode_batch(messages, PARTS, TimeBounds(0, 2**62), bucket)
    return decoded, sort_batch(decoded, partition, applied, seen or set(), bucket)


def test_fresh_events_are_applied_in_offset_order_with_their_digests_by_bucket() -> None:
    decoded, out = sort([msg(0, event("a", OURS[0])), msg(1, event("b", OURS[1], T0 + HOUR))])
    assert [e.event_id for e in out.fresh] == ["a", "b"]
    assert out.new_digests == {bucket(T0): [event_digest("a")], bucket(T0 + HOUR): [event_digest("b")]}
    assert out.last_offset == 1
    assert (out.replayed, out.duplicates, out.rejected, out.misrouted_count) == (0, 0, 0, 0)
    assert sorted(decoded.users_of(0)) == sorted(OURS[:2])
    assert decoded.digests == {bucket(T0): [event_digest("a")], bucket(T0 + HOUR): [event_digest("b")]}


def test_messages_at_or_below_the_applied_offset_are_replayed_whatever_they_hold() -> None:
    messages = [msg(4, event("a", OURS[0])), (5, None, b"not json"), msg(6, event("c", OURS[0]))]
    _, out = sort(messages, applied=5)
    assert out.replayed == 2
    assert [e.event_id for e in out.fresh] == ["c"]
    assert out.dead_letters == []
    assert out.last_offset == 6


def test_a_batch_entirely_replayed_keeps_the_applied_offset() -> None:
    _, out = sort([msg(2, event("a", OURS[0])), msg(3, event("b", OURS[0]))], applied=3)
    assert (out.replayed, out.last_offset, out.fresh) == (2, 3, [])


def test_invalid_messages_and_envelope_items_are_dead_letters_with_where_they_came_from() -> None:
    bad_item = {"event_id": "x", "user_id": OURS[0]}  # no type, no ts
    _, out = sort([(7, b"key", b"not json"), msg(8, event("a", OURS[0]), bad_item)], applied=6)
    assert [(d.offset, d.key) for d in out.dead_letters] == [(7, b"key"), (8, b"k")]
    assert out.dead_letters[0].rejected.reason.startswith("not JSON")
    assert out.dead_letters[1].rejected.index == 1
    assert isinstance(out.dead_letters[0], DeadLetter)
    assert out.rejected == 2
    assert [e.event_id for e in out.fresh] == ["a"]


def test_events_of_users_another_partition_owns_are_misrouted_to_their_owner() -> None:
    _, out = sort([msg(0, event("a", THEIRS[0]), event("b", OURS[0]), event("c", THEIRS[0]))])
    target = partition_for(THEIRS[0], PARTS)
    assert {p: [e.event_id for e in evs] for p, evs in out.misrouted.items()} == {target: ["a", "c"]}
    assert out.misrouted_count == 2
    assert [e.event_id for e in out.fresh] == ["b"]


def test_ids_seen_in_redis_or_earlier_in_the_batch_are_duplicates() -> None:
    seen = {event_digest("old")}
    messages = [msg(0, event("old", OURS[0])), msg(1, event("new", OURS[0])), msg(2, event("new", OURS[1]))]
    _, out = sort(messages, seen=seen)
    assert out.duplicates == 2
    assert [e.event_id for e in out.fresh] == ["new"]
    assert seen == {event_digest("old")}  # the snapshot's set is not changed


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["e1", "e2", "e3", "bad"]), st.sampled_from(USERS[:8]), st.integers(1, 3)),
        max_size=30,
    ),
    st.integers(-1, 12),
)
def test_every_event_lands_in_exactly_one_class(spec: list[tuple[str, str, int]], applied: int) -> None:
    messages: list[Message] = []
    for offset, (eid, uid, n) in enumerate(spec):
        items = [event(f"{eid}-{j % 2}", uid) if eid != "bad" else {"event_id": eid} for j in range(n)]
        messages.append(msg(offset, *items))
    _, out = sort(messages, applied=applied)
    total = sum(n for _, _, n in spec)
    classes = out.replayed + out.rejected + out.misrouted_count + out.duplicates + len(out.fresh)
    assert classes == total
    assert out.last_offset == max([applied, *range(len(spec))])
    assert len({e.event_id for e in out.fresh}) == len(out.fresh)
