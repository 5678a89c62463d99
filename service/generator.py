"""A deterministic synthetic event stream that follows the seeds' core path.

Users arrive over the period through channels of different quality, act in short
sessions (visit, then register, verify, order, repurchase or renewal as they progress),
a minority are heavy users, most drift away (silent, churned, dead) and some come back
after a long gap. Insurance-style orders carry `policy_id` and `policy_end`, and some
users renew. Events come out in time order, streamed: memory grows with the users
active at once, not with the history.
"""

from __future__ import annotations

import heapq
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from service.core.durations import DAY_MS
from service.core.profile import Profile

HOUR_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class ChannelQuality:
    weight: float
    register: float  # per session, until registered
    verify: float
    order: float
    repeat: float  # another order in a later session
    stay: float  # chance to have another session after each one


CHANNELS: dict[str, ChannelQuality] = {
    "organic": ChannelQuality(0.30, 0.55, 0.70, 0.45, 0.35, 0.85),
    "search": ChannelQuality(0.25, 0.45, 0.60, 0.35, 0.25, 0.80),
    "referral": ChannelQuality(0.10, 0.65, 0.75, 0.55, 0.40, 0.88),
    "social": ChannelQuality(0.20, 0.30, 0.45, 0.20, 0.15, 0.70),
    "ads": ChannelQuality(0.15, 0.20, 0.40, 0.12, 0.10, 0.60),
}
_NAMES = list(CHANNELS)
_WEIGHTS = [CHANNELS[c].weight for c in _NAMES]


@dataclass(slots=True)
class _User:
    uid: str
    channel: str
    mean_gap_ms: float
    registered: bool = False
    verified: bool = False
    orders: int = 0
    policy_end: int = 0
    n: int = 0


def generate(
    *,
    users: int,
    start_ms: int,
    days: float,
    seed: int = 0,
    profile: Profile | None = None,
    user_prefix: str = "u",
) -> Iterator[dict[str, Any]]:
    """Canonical events of `users` users over `days` days from `start_ms`, in ts order."""
    rng = random.Random(seed)
    end_ms = start_ms + int(days * DAY_MS)
    insurance = profile is not None and profile.name == "insurance"
    verify_type = "verify"
    arrivals = sorted(start_ms + int(rng.random() * 0.85 * (end_ms - start_ms)) for _ in range(users))
    heap: list[tuple[int, int, _User]] = []
    pending: list[tuple[int, int, dict[str, Any]]] = []  # a session's events, released in ts order
    seq = 0
    next_arrival = 0
    while heap or next_arrival < users:
        if next_arrival < users and (not heap or arrivals[next_arrival] <= heap[0][0]):
            ts = arrivals[next_arrival]
            channel = rng.choices(_NAMES, _WEIGHTS)[0]
            heavy = rng.random() < 0.1
            gap = (0.7 if heavy else rng.choice((3.0, 6.0, 12.0))) * DAY_MS
            if insurance:
                gap *= 5
            user = _User(f"{user_prefix}{next_arrival}", channel, gap)
            next_arrival += 1
        else:
            ts, _, user = heapq.heappop(heap)
        if ts > end_ms:
            continue
        while pending and pending[0][0] <= ts:
            yield heapq.heappop(pending)[2]
        for event in _session(rng, user, ts, insurance, verify_type, first=user.n == 0):
            seq += 1
            heapq.heappush(pending, (event["ts"], seq, event))
        q = CHANNELS[user.channel]
        if rng.random() < q.stay:
            nxt = ts + int(rng.expovariate(1.0 / user.mean_gap_ms)) + HOUR_MS
        elif rng.random() < 0.35:  # drifted away, but comes back after a long gap
            nxt = ts + int(rng.uniform(20, 400) * DAY_MS)
        else:
            continue
        if user.policy_end and nxt > user.policy_end - 30 * DAY_MS and nxt < user.policy_end:
            nxt = user.policy_end - int(rng.uniform(1, 30) * DAY_MS)  # renewal season brings them back
        if nxt <= end_ms:
            seq += 1
            heapq.heappush(heap, (max(nxt, ts + 1), seq, user))
    while pending:
        yield heapq.heappop(pending)[2]


def _session(
    rng: random.Random, user: _User, ts: int, insurance: bool, verify_type: str, first: bool
) -> Iterator[dict[str, Any]]:
    q = CHANNELS[user.channel]
    steps: list[tuple[str, dict[str, Any]]] = [("visit", {})]
    if not user.registered and rng.random() < q.register:
        user.registered = True
        steps.append(("register", {}))
    if user.registered and not user.verified and rng.random() < q.verify:
        user.verified = True
        steps.append((verify_type, {}))
    wants_order = rng.random() < (q.order if user.orders == 0 else q.repeat)
    if user.registered and wants_order:
        if insurance and user.policy_end and ts < user.policy_end:
            amount = round(rng.uniform(300, 1500), 2)
            user.policy_end += 365 * DAY_MS
            steps.append(("renew", {"amount": amount, "properties": {"policy_end": user.policy_end}}))
        else:
            amount = round(rng.lognormvariate(4.0, 0.8), 2)
            props: dict[str, Any] = {}
            if insurance:
                user.policy_end = ts + 365 * DAY_MS
                props = {"policy_id": f"p-{user.uid}-{user.orders}", "policy_end": user.policy_end}
            steps.append(("order", {"amount": amount, **({"properties": props} if props else {})}))
        user.orders += 1
    if user.orders and rng.random() < 0.1:
        steps.append(("message_click", {}))
    for i, (etype, extra) in enumerate(steps):
        user.n += 1
        event: dict[str, Any] = {
            "event_id": f"{user.uid}-{user.n}",
            "user_id": user.uid,
            "type": etype,
            "ts": ts + i * 20_000,
            **extra,
        }
        if first and i == 0:
            event["channel"] = user.channel
        yield event


def generate_live(
    *, users: int, seed: int, rate_per_s: float, profile: Profile | None = None, tick_s: float = 1.0
) -> Iterator[list[dict[str, Any]]]:
    """Batches of live events (ts = now), `rate_per_s` on average, one batch per tick."""
    rng = random.Random(seed)
    insurance = profile is not None and profile.name == "insurance"
    pool: dict[int, _User] = {}
    while True:
        started = time.monotonic()
        now = int(time.time() * 1000)
        batch: list[dict[str, Any]] = []
        while len(batch) < rate_per_s * tick_s:
            i = rng.randrange(users)
            user = pool.get(i)
            first = user is None
            if user is None:
                channel = rng.choices(_NAMES, _WEIGHTS)[0]
                user = pool[i] = _User(f"live-{seed}-{i}", channel, DAY_MS)
            batch.extend(_session(rng, user, now, insurance, "verify", first=first))
        yield batch
        time.sleep(max(0.0, tick_s - (time.monotonic() - started)))
