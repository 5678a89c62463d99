"""A bounded number of channels per partition.

Channel names come from events: every distinct one gets per-channel indexes and
counters, and costs range queries in every sweep of its partition from then on. So a
partition keeps at most `limit` named channels (the first ones seen); users arriving
with a channel beyond those are counted together under `~other`, which no event can name.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from service.core.events import Event
from service.core.labels import OTHER_CHANNELS


def cap_channels(events: Sequence[Event], known: Iterable[str], limit: int) -> Sequence[Event]:
    """`events` with each channel beyond the partition's first `limit` (those in `known`
    and the new ones met first in this batch) replaced by `~other`."""
    kept = set(known)
    kept.discard(OTHER_CHANNELS)  # the limit counts named channels
    out: list[Event] | None = None
    for i, ev in enumerate(events):
        channel = ev.channel
        if channel is None or channel in kept:
            continue
        if len(kept) < limit:
            kept.add(channel)
            continue
        if out is None:
            out = list(events)
        out[i] = replace(ev, channel=OTHER_CHANNELS)
    return events if out is None else out
