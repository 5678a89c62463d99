"""The per-partition indexes a batch changes: where each touched user must be found next.

The store keeps users in sorted sets so that reads and the sweep are range queries, never
scans: by `last_active` per channel, by `first_seen` per channel while they can still
cross the new window, by `last_active` per RFM class, and by the next due trigger. A batch
says which users moved in each; these are its rules.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from service.core.records import UserRecord
from service.core.triggers import next_due


@dataclass
class IndexChanges:
    """What a batch changes in the indexes; removals are applied before additions."""

    active_index: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    first_index: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    index_removals: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    # users whose first_seen moved back past the index's window: their (later) entry is stale
    first_removals: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    rfm_index: dict[int, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    rfm_removals: dict[int, list[str]] = field(default_factory=lambda: defaultdict(list))
    due_index: dict[str, int | None] = field(default_factory=dict)  # None: no longer pending

    def place(
        self,
        uid: str,
        rec: UserRecord,
        class_before: int,
        class_after: int,
        had_pending: bool,
        moved_active: bool,
        moved_first: bool,
        keep_first: int,
    ) -> None:
        """Index one touched user: `moved_active`/`moved_first` say whether their last_active,
        first_seen or channel changed; `keep_first` is how long the first_seen index keeps users."""
        if rec.pending or had_pending:
            self.due_index[uid] = next_due(rec)
        if class_before and class_before != class_after:
            self.rfm_removals[class_before].append(uid)
        if class_after and (class_after != class_before or moved_active):
            self.rfm_index[class_after][uid] = rec.last_active
        if moved_active:
            self.active_index[rec.channel][uid] = rec.last_active
        if moved_first:
            if rec.first_seen + keep_first > rec.seen_until:
                self.first_index[rec.channel][uid] = rec.first_seen
            else:
                self.first_removals[rec.channel].append(uid)
