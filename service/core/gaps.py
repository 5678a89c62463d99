"""Return gaps: how long users stay away before they come back, and what that suggests.

Every return of an idle user (an activity event at least an hour after their previous
activity) is counted in a log-spaced bucket of its gap. With the users who are idle
right now (censored observations: they may still come back), that gives, for each
bucket boundary d, the estimated probability that a user idle for d returns:

    P(return | idle >= d) = returns with gap >= d / (returns with gap >= d + users idle >= d now)

Operators set "silent after 30 days" by feel; the curve says where the chance of a
return really falls below 50%, 20%, 5%.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

from service.core.durations import DAY_MS, format_duration

HOUR_MS = 3_600_000
# 1h, 2h, 4h, ... 16384h (~1.9 years), then 2 years: log-spaced boundaries from one hour to two years
BOUNDS_MS: tuple[int, ...] = (*(HOUR_MS << k for k in range(15)), 730 * DAY_MS)


def gap_bucket(gap_ms: int) -> int | None:
    """Index of the largest boundary <= gap; None for gaps under an hour (not a return)."""
    if gap_ms < BOUNDS_MS[0]:
        return None
    return bisect_right(BOUNDS_MS, gap_ms) - 1


@dataclass(frozen=True)
class CurvePoint:
    idle_ms: int
    returns_after: int  # returns whose gap was >= idle_ms
    still_idle: int  # users idle >= idle_ms now, not (yet) returned
    probability: float | None  # of a return, for a user idle idle_ms; None without data

    def to_json(self) -> dict[str, object]:
        return {
            "idle": format_duration(self.idle_ms),
            "idle_ms": self.idle_ms,
            "returns_after": self.returns_after,
            "still_idle": self.still_idle,
            "return_probability": self.probability,
        }


def return_curve(bucket_counts: list[int], idle_at_least: list[int]) -> list[CurvePoint]:
    """The curve from per-bucket return counts and the users idle at least each boundary."""
    assert len(bucket_counts) == len(BOUNDS_MS) == len(idle_at_least)
    points = []
    returns_after = 0
    for i in range(len(BOUNDS_MS) - 1, -1, -1):
        returns_after += bucket_counts[i]
        total = returns_after + idle_at_least[i]
        points.append(
            CurvePoint(
                BOUNDS_MS[i], returns_after, idle_at_least[i], returns_after / total if total else None
            )
        )
    return points[::-1]


class TooFewReturns(ValueError):
    """Not enough observed returns to suggest thresholds from."""


@dataclass(frozen=True)
class Suggestion:
    silent_after: int
    churn_after: int
    dead_after: int
    returns: int


def suggest(
    curve: list[CurvePoint], levels: tuple[float, float, float] = (0.5, 0.2, 0.05), min_returns: int = 100
) -> Suggestion:
    """Silent, churned and dead where the return probability first falls below each level."""
    returns = curve[0].returns_after if curve else 0
    if returns < min_returns:
        raise TooFewReturns(
            f"only {returns} returns observed; at least {min_returns} are needed to suggest thresholds "
            "(send more history, or lower --min-returns knowing the estimate is noisy)"
        )
    found: list[int] = []
    for level in levels:
        below = [p.idle_ms for p in curve if p.probability is not None and p.probability < level]
        found.append(below[0] if below else BOUNDS_MS[-1])
    silent, churn, dead = found
    churn = max(churn, _next_bound(silent))
    dead = max(dead, _next_bound(churn))
    return Suggestion(silent, churn, dead, returns)


def _next_bound(ms: int) -> int:
    i = bisect_right(BOUNDS_MS, ms)
    return BOUNDS_MS[i] if i < len(BOUNDS_MS) else ms * 2
