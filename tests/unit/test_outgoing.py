"""Dead letters and re-routed envelopes always fit what the worker may send."""

from __future__ import annotations

import orjson

from service.core.events import Event, Rejected
from service.core.intake import DeadLetter
from service.worker.outgoing import as_reference, dead_letter, rerouted

KIB = 1024


def _dead(raw: bytes) -> DeadLetter:
    return DeadLetter(offset=7, key=b"k", rejected=Rejected("unknown field(s): junk", raw, None))


def test_a_rejected_message_over_the_limit_goes_as_a_reference() -> None:
    raw = b"x" * (300 * KIB)
    out = dead_letter("dlq", "events", 3, _dead(raw), max_bytes=200 * KIB)
    headers = dict(out.headers)
    assert out.value == raw[: 64 * KIB]
    assert headers["x-error-reason"] == b"too_large"
    assert headers["x-original-size"] == str(len(raw)).encode()
    assert headers["x-original-reason"] == b"unknown field(s): junk"
    assert (headers["x-source-topic"], headers["x-source-partition"], headers["x-source-offset"]) == (
        b"events",
        b"3",
        b"7",
    )


def test_a_dead_letter_a_topic_refused_becomes_a_reference_once() -> None:
    whole = dead_letter("dlq", "events", 3, _dead(b"y" * (100 * KIB)), max_bytes=900 * KIB)
    assert dict(whole.headers)["x-error-reason"] == b"unknown field(s): junk"
    ref = as_reference(whole)
    assert ref is not None and len(ref.value) == 64 * KIB
    assert dict(ref.headers)["x-error-reason"] == b"too_large"
    assert as_reference(ref) is None  # a refused reference is not cut again
    small = dead_letter("dlq", "events", 3, _dead(b"z" * 10), max_bytes=900 * KIB)
    assert as_reference(small) is None


def test_a_misrouted_group_is_re_sent_in_envelopes_that_fit() -> None:
    events = [
        Event(f"e{i}", f"u{i}", "visit", 1_700_000_000_000, properties={"p": "q" * 1000}) for i in range(50)
    ]
    out = rerouted("events", 0, 2, events, max_bytes=10 * KIB)
    assert len(out) > 1
    assert all(len(m.value) <= 10 * KIB and m.partition == 2 for m in out)
    assert [e["event_id"] for m in out for e in orjson.loads(m.value)] == [e.event_id for e in events]
    assert [m.key for m in out] == [orjson.loads(m.value)[0]["user_id"].encode() for m in out]
