"""The operator's "at a glance": dead letters, events applied and consumer lag.

Lag is what the topic holds beyond what Redis says was applied: the partition's end
offset minus the next offset to apply. The worker's own gauge is per process and
only for assigned partitions; this one is whole, from the store, whichever worker
applied what.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from service.core import counters as ctr


def consumer_lag(ends: Mapping[int, int], applied: Mapping[int, int]) -> dict[int, int]:
    """Messages not yet applied per partition; `applied` is the last applied offset (-1: none).

    Never negative: some brokers (Tansu) report the last record batch's base offset as
    the end, below what was really written, so a caught-up partition may look "ahead".
    """
    return {p: max(0, end - applied.get(p, -1) - 1) for p, end in sorted(ends.items())}


def ops_document(
    totals: Mapping[str, float],
    applied: Mapping[int, int],
    committed_at: Mapping[int, int],
    ends: Mapping[int, int] | None,
    outbox_pending: int,
    kafka_error: str | None = None,
) -> dict[str, Any]:
    """The `GET /ops` body. `ends` is None when the broker could not be asked (`kafka_error`)."""
    lag = consumer_lag(ends, applied) if ends is not None else None
    return {
        "dlq_events": int(totals.get(ctr.REJECTED, 0)),
        "events_applied": int(totals.get(ctr.APPLIED, 0)),
        "duplicates": int(totals.get(ctr.DUPLICATES, 0)),
        "misrouted": int(totals.get(ctr.MISROUTED, 0)),
        "outbox_pending": outbox_pending,
        "lag": None
        if lag is None
        else {"total": sum(lag.values()), "partitions": {str(p): n for p, n in lag.items()}},
        "applied_offsets": {str(p): o for p, o in sorted(applied.items())},
        "last_commit_ms": max(committed_at.values()) if committed_at else None,
        "kafka_error": kafka_error,
    }
