"""A deterministic synthetic event stream shaped like the profiles' products.

Users arrive over the whole period through channels of clearly different quality, act
in short sessions (visit, login, browsing, then the profile's core path: register,
verify, first order, repurchase, renewal), a minority are heavy users, and most drift
away. Some come back after gaps chosen to land in the profile's silent, churned or dead
range, some after a recall message they clicked; insurance-style orders carry
`policy_id`/`policy_end`, get renewal reminders, and some users renew. The time scale
follows the profile's thresholds, so "quiet" means days for a daily app and months for
insurance.

Events come out in time order, streamed: a heap of per-user next-session times and a
heap of already drawn future events, so memory grows with the users still to come back,
never with the history. The same arguments give the same events, ids included.
"""

from __future__ import annotations

import heapq
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

from service.core.durations import DAY_MS
from service.core.profile import Profile
from service.dev.behaviour import (
    CHANNELS,
    HOUR_MS,
    MINUTE_MS,
    REACHABLE,
    REMINDER_DAYS,
    RETURN_STATES,
    Channel,
    Model,
    SimUser,
    plan_for,
)

__all__ = ["CHANNELS", "Channel", "generate", "generate_live"]


def _arrivals(rng: random.Random, users: int, start_ms: int, span: int) -> Iterator[int]:
    """`users` uniform arrival times over the span, ascending, drawn one at a time.

    Uniform order statistics from the top (`D *= U ** (1/i)`), mirrored: no sorted list
    of a million arrival times is ever held.
    """
    top = 1.0
    for i in range(users, 0, -1):
        top *= (1.0 - rng.random()) ** (1.0 / i)
        yield start_ms + int((1.0 - top) * span)


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
    if users < 0 or days < 0:
        raise ValueError(f"users and days must not be negative (users={users}, days={days})")
    model = Model(random.Random(seed), plan_for(profile), user_prefix, f"g{seed}-")
    return _stream(model, users, start_ms, start_ms + int(days * DAY_MS), seed)


def _stream(model: Model, users: int, start_ms: int, end_ms: int, seed: int) -> Iterator[dict[str, Any]]:
    arrivals = _arrivals(random.Random(f"arrivals-{seed}"), users, start_ms, end_ms - start_ms)
    heap: list[tuple[int, int, SimUser]] = []  # next session of each user still to come back
    pending: list[tuple[int, int, dict[str, Any]]] = []  # drawn events, released in ts order
    heappush, heappop = heapq.heappush, heapq.heappop
    out: list[dict[str, Any]] = []
    seq = 0
    idx = 0
    next_arrival = next(arrivals, None)
    while True:
        if next_arrival is not None and (not heap or next_arrival <= heap[0][0]):
            ts = next_arrival
            user = model.new_user(idx)
            idx += 1
            next_arrival = next(arrivals, None)
        elif heap:
            ts, _, user = heappop(heap)
        else:
            break
        while pending and pending[0][0] <= ts:
            yield heappop(pending)[2]
        renew = 0 < user.renew_at <= ts
        last = model.session(user, ts, out, 1.5, renew)
        nxt = _next_session(model, user, last, out, end_ms)
        for ev in out:
            if ev["ts"] <= end_ms:
                seq += 1
                heappush(pending, (ev["ts"], seq, ev))
        out.clear()
        if nxt is not None and nxt <= end_ms:
            heappush(heap, (nxt, user.idx, user))
    while pending:
        yield heappop(pending)[2]


def _next_session(
    model: Model, user: SimUser, last: int, out: list[dict[str, Any]], end_ms: int
) -> int | None:
    """When `user` comes back (None: not within reach), appending messages sent meanwhile.

    Renewal reminders go out before `policy_end` until the user renews; a user who lapses
    may get a recall message when they turn silent, and a click brings them back.
    """
    rng = model.rng
    plan = model.plan
    nxt: int | None
    lapsed = rng.random() >= user.stay
    if not lapsed:
        nxt = last + HOUR_MS + int(rng.expovariate(1.0 / user.gap))
    elif rng.random() < user.ch.back:
        r = rng.random()
        if r < RETURN_STATES[0]:
            low, high = plan.silent, plan.churn
        elif r < RETURN_STATES[0] + RETURN_STATES[1]:
            low, high = plan.churn, plan.dead
        else:
            low, high = plan.dead, plan.dead * 3 // 2
        nxt = last + int(rng.uniform(low, high))
    else:
        nxt = None
    if user.renew_at > last and (nxt is None or user.renew_at < nxt):
        nxt = user.renew_at
    if user.policy_end and user.policy_end > last:
        stop = user.renew_at if user.renew_at > last else user.policy_end
        for days in REMINDER_DAYS:
            due = user.policy_end - days * DAY_MS
            if last < due < stop and (nxt is None or due < nxt) and due <= end_ms and rng.random() < 0.85:
                ref = f"{model.policy_id(user)}-{days}d"
                out.append(model.message(user, "message_delivered", due, "renewal", ref))
                if rng.random() < user.ch.click:
                    out.append(
                        model.message(user, "message_click", due + _minutes(rng, 5, 600), "renewal", ref)
                    )
    if lapsed:
        silent_at = last + plan.silent + _minutes(rng, 0, 24 * 60)
        if (nxt is None or silent_at < nxt) and silent_at <= end_ms and rng.random() < REACHABLE:
            ref = f"{user.uid}-{user.n}"
            out.append(model.message(user, "message_delivered", silent_at, "recall", ref))
            if rng.random() < user.ch.click:
                click = silent_at + _minutes(rng, 5, 600)
                out.append(model.message(user, "message_click", click, "recall", ref))
                nxt = click + _minutes(rng, 1, 30)
    return nxt


def _minutes(rng: random.Random, low: float, high: float) -> int:
    return int(rng.uniform(low, high) * MINUTE_MS)


def generate_live(
    *,
    users: int,
    seed: int,
    rate_per_s: float,
    profile: Profile | None = None,
    tick_s: float = 1.0,
    now_ms_fn: Callable[[], int] | None = None,
    pace: bool = True,
    user_prefix: str | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """One batch of live events per tick, `rate_per_s` on average, with ts in the last tick.

    A pool of `users` users, picked with a skew (a few come often, most rarely, so some
    turn silent and are recalled while the demo runs), each moving along the core path as
    in `generate`. `now_ms_fn` is the clock (wall clock by default); `pace` sleeps out the
    rest of each tick. Event ids include the first tick's time, so a restarted demo never
    repeats ids the store has already de-duplicated.
    """
    clock = now_ms_fn or (lambda: int(time.time() * 1000))
    rng = random.Random(seed)
    plan = plan_for(profile)
    prefix = f"live{seed}-" if user_prefix is None else user_prefix
    pool: dict[int, SimUser] = {}
    tick_ms = int(tick_s * 1000)
    prev = 0
    model: Model | None = None
    owed = 0.0
    while True:
        started = time.monotonic()
        now = clock()
        if model is None:
            prev = now - tick_ms
            model = Model(rng, plan, prefix, f"l{seed}.{now:x}-")
        span = max(now - prev, 1)
        owed += rate_per_s * span / 1000
        batch: list[dict[str, Any]] = []
        touched: list[SimUser] = []
        while len(batch) < owed:
            i = int(users * rng.random() ** 3)
            user = pool.get(i)
            if user is None:
                user = pool[i] = model.new_user(i)
            start = max(prev + int(rng.random() * span), user.last)
            renew = bool(user.policy_end) and rng.random() < 0.05
            model.session(user, start, batch, 0.02, renew)
            touched.append(user)
        owed -= len(batch)
        for ev in batch:  # a session begun late in the tick must not run into the future
            if ev["ts"] > now:
                ev["ts"] = now
        for u in touched:
            u.last = min(u.last, now)
        batch.sort(key=_ts)
        prev = now
        yield batch
        if pace:
            time.sleep(max(0.0, tick_s - (time.monotonic() - started)))


def _ts(event: dict[str, Any]) -> int:
    ts: int = event["ts"]
    return ts
