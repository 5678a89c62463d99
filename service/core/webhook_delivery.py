"""What a webhook relay does with each answer: pure decisions, no HTTP client here.

A trigger is delivered at least once and in order per user. A 2xx is delivered; a 5xx,
a 429 or a timeout is tried again after an exponential, jittered wait (a 429's
`Retry-After` is honoured but bounded, since it comes from outside); any other 4xx, or
a retryable failure that used up its attempts, goes to the dead-letter topic with the
last status. Offsets move only past a contiguous run of finished (delivered or
dead-lettered) messages, so a restart never skips an undelivered trigger.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from enum import Enum
from urllib.parse import urlsplit

TIMEOUT = 0  # the status recorded for an attempt that got no answer in time


class Verdict(Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    DEAD = "dead"


def status_class(status: int) -> str:
    """The metric label of a status: `2xx` ... `5xx`, or `timeout` for no answer."""
    return "timeout" if status == TIMEOUT else f"{status // 100}xx"


def verdict(status: int, attempt: int, max_attempts: int) -> Verdict:
    """Delivered, retried or dead-lettered after `attempt` (1-based) got `status`."""
    if 200 <= status < 300:
        return Verdict.DELIVERED
    retryable = status == TIMEOUT or status == 429 or status >= 500
    if retryable and attempt < max_attempts:
        return Verdict.RETRY
    return Verdict.DEAD


def retry_after(value: str | None, now: float, cap: float) -> float | None:
    """Seconds a `Retry-After` header asks for (delta or HTTP date), within [0, cap]."""
    if not value or len(value) > 64:
        return None
    text = value.strip()
    if text.isdigit():
        return min(float(text), cap)
    try:
        when = parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, min(when - now, cap))


def backoff(attempt: int, base: float, cap: float, rng: random.Random, asked: float | None = None) -> float:
    """Wait before the attempt after `attempt`: full jitter over base * 2^(attempt-1).

    A receiver's own `Retry-After` (already bounded) is a floor, never exceeded by
    more than the cap.
    """
    ceiling = min(cap, base * (2 ** min(attempt - 1, 30)))
    wait = rng.uniform(0.0, ceiling)
    return min(cap, max(wait, asked)) if asked is not None else wait


@dataclass(slots=True)
class OffsetTracker:
    """The next offset safe to commit for one partition.

    Messages finish out of order (users are delivered concurrently); the commit
    point is the lowest offset not yet finished.
    """

    next_commit: int
    finished: set[int] = field(default_factory=set)

    def finish(self, offset: int) -> int | None:
        """Mark `offset` finished; the new commit offset if it moved, else None."""
        if offset < self.next_commit:
            return None
        self.finished.add(offset)
        moved = self.next_commit
        while moved in self.finished:
            self.finished.discard(moved)
            moved += 1
        if moved == self.next_commit:
            return None
        self.next_commit = moved
        return moved


_LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost", "ip6-loopback"})


def check_url(url: str, allow_http: bool) -> str:
    """The webhook URL, if signed triggers may go there: https, or http to loopback
    (or anywhere when explicitly allowed). Raises ValueError with the reason."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("the webhook URL must be an absolute http(s) URL")
    if parts.username or parts.password:
        raise ValueError("the webhook URL must not carry credentials (it would reach logs)")
    if parts.scheme == "http" and not allow_http and not _is_loopback(parts.hostname):
        raise ValueError("the webhook URL must be https unless it is loopback or http is allowed")
    return url


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
