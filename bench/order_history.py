"""A log shaped like a real order history, for the backfill phase of the benchmark.

The synthetic history of `service.dev.generator` has users acting in sessions, so a batch
holds many events of one user and the per-user work is shared among them. A real order
log is the other way round: about three orders per user, weeks or months apart, so almost
every event of a batch belongs to a different user, and the event clock crosses every
threshold (silent, churned, dead), so sweeps and recall triggers run throughout.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from typing import Any

DAY_MS = 86_400_000
CHANNELS = ("ads", "organic", "referral", "social")


def order_history(*, events: int, start_ms: int, days: int = 540, seed: int = 0) -> Iterator[dict[str, Any]]:
    """`events` orders (or fewer) of about `events / 2.6` users over `days` days, in time order: a user's
    first order falls anywhere in the span, the next ones 2 to 120 days apart."""
    rng = random.Random(seed)
    users = max(1, events * 10 // 26)  # 2.6 orders each on average, the span cutting some short
    end = start_ms + days * DAY_MS
    per_user: list[list[int]] = []
    for _ in range(users):
        ts = start_ms + rng.randrange(days * DAY_MS)
        times = [ts]
        for _ in range(rng.choice((0, 1, 2, 2, 3, 4))):
            ts += rng.randrange(2 * DAY_MS, 120 * DAY_MS)
            if ts >= end:
                break
            times.append(ts)
        per_user.append(times)
    ordered = heapq.merge(*([(t, u, i) for i, t in enumerate(times)] for u, times in enumerate(per_user)))
    for n, (ts, u, i) in enumerate(ordered):
        if n >= events:
            return
        yield {
            "event_id": f"o{u}-{i}",
            "user_id": f"c{u}",
            "type": "order",
            "ts": ts,
            "channel": CHANNELS[u % len(CHANNELS)],
            "amount": round(rng.uniform(5, 400), 2),
        }
