"""Metric naming shared by every process: the name prefix and the bounded channel label.

Channel names come from events, so the number of label values is up to the producers;
a bounded set of labels keeps Prometheus series and per-scrape work finite.
"""

from __future__ import annotations

PREFIX = "lifecycle"
OTHER_CHANNELS = "~other"  # not a valid channel name, so it can never be a real one


class ChannelLabels:
    """The first `limit` channels seen get a label of their own; the rest share `~other`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._known: set[str] = set()

    def __call__(self, channel: str) -> str:
        if channel in self._known:
            return channel
        if len(self._known) < self.limit:
            self._known.add(channel)
            return channel
        return OTHER_CHANNELS
