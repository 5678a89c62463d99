"""A sweep in chunks: a chunk marks its users accounted to the sweep's clock, so sweeping
them again (the next chunk's retry after a crash) counts and fires nothing twice, and
chunks add up to the one-step sweep."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from service.core.batch import apply_events, sweep
from service.core.durations import DAY_MS
from service.core.events import Event
from service.core.profile import load_profile

PROFILE = load_profile("insurance")
T0 = 1_700_000_000_000

histories = st.lists(
    st.tuples(st.integers(0, 30), st.integers(0, 200), st.sampled_from(["visit", "register", "order"])),
    min_size=1,
    max_size=60,
)


def _records(history: list[tuple[int, int, str]]) -> dict[str, object]:
    events = sorted(
        (Event(f"e{i}", f"u{u}", t, T0 + d * DAY_MS + i, amount=10.0 if t == "order" else None)
         for i, (u, d, t) in enumerate(history)),
        key=lambda e: e.ts,
    )  # fmt: skip
    return dict(apply_events({}, events, T0, PROFILE).records)


@settings(max_examples=60, deadline=None)
@given(histories, st.integers(1, 400), st.integers(1, 7))
def test_chunks_add_up_to_one_step_and_a_repeat_adds_nothing(
    history: list[tuple[int, int, str]], later_days: int, chunk: int
) -> None:
    records = _records(history)
    swept = max(r.seen_until for r in records.values())  # type: ignore[attr-defined]
    now = swept + later_days * DAY_MS
    whole = sweep(records, swept, now, PROFILE)  # type: ignore[arg-type]

    counts: Counter[str] = Counter()
    fired: list[str] = []
    accounted = dict(records)
    uids = sorted(records)
    for start in range(0, len(uids), chunk):
        part = {u: records[u] for u in uids[start : start + chunk]}
        result = sweep(part, swept, now, PROFILE, mark_accounted=True)  # type: ignore[arg-type]
        counts.update(result.counts)
        fired += [f.id for f in result.triggers.fired]
        accounted.update(result.records)
    assert +counts == +whole.counts
    assert sorted(fired) == sorted(f.id for f in whole.triggers.fired)

    again = sweep(accounted, swept, now, PROFILE, mark_accounted=True)  # type: ignore[arg-type]
    assert not +again.counts and not again.triggers.fired
