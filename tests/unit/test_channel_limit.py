"""The per-partition channel cap keeps the first channels seen and folds the rest."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from service.core.channels import cap_channels
from service.core.events import Event
from service.core.labels import OTHER_CHANNELS


def _ev(i: int, channel: str | None) -> Event:
    return Event(f"e{i}", f"u{i}", "visit", 1_700_000_000_000 + i, channel)


@given(
    st.lists(st.sampled_from([None, "a", "b", "c", "d", "e", "f"]), max_size=40),
    st.sets(st.sampled_from(["a", "b", "x", OTHER_CHANNELS]), max_size=3),
    st.integers(2, 5),
)
def test_at_most_limit_named_channels_the_first_ones_kept(
    channels: list[str | None], known: set[str], limit: int
) -> None:
    events = [_ev(i, ch) for i, ch in enumerate(channels)]
    out = cap_channels(events, known, limit)
    assert [(e.event_id, e.user_id, e.ts) for e in out] == [(e.event_id, e.user_id, e.ts) for e in events]
    named = (known - {OTHER_CHANNELS}) | {e.channel for e in out if e.channel not in (None, OTHER_CHANNELS)}
    assert len(named) <= max(limit, len(known - {OTHER_CHANNELS}))
    for before, after in zip(events, out, strict=True):
        if before.channel is None or before.channel in known:
            assert after.channel == before.channel  # known channels and no channel stay
        else:
            assert after.channel in (before.channel, OTHER_CHANNELS)
    first_new: list[str] = []
    for e in events:
        if e.channel and e.channel not in known and e.channel not in first_new:
            first_new.append(e.channel)
    room = max(limit - len(known - {OTHER_CHANNELS}), 0)
    assert {e.channel for e in out} - {None, OTHER_CHANNELS} - known == set(first_new[:room])
