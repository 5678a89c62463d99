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
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from service.core.durations import DAY_MS
from service.core.lifecycle import Thresholds
from service.core.profile import FunnelStage, Profile

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
HEAVY_SHARE = 0.08  # heavy users: many short-gap sessions, more orders
REACHABLE = 0.6  # share of lapsed users a recall message reaches
REMINDER_DAYS = (30, 7, 1)  # renewal reminders before policy_end
POLICY_TERMS_DAYS = (30, 90, 365)  # short-term and annual policies, so renewals show in weeks
POLICY_TERM_WEIGHTS = (0.25, 0.25, 0.5)
RETURN_STATES = (0.5, 0.35, 0.15)  # a return gap lands in silent / churned / dead


@dataclass(frozen=True, slots=True)
class Channel:
    """Acquisition channel quality; per-session probabilities unless noted."""

    name: str
    weight: float  # share of arriving users
    register: float  # until registered
    verify: float  # until verified (or any intermediate core-path step)
    order: float  # first order, once the earlier steps are done
    repeat: float  # another order in a later session
    stay: float  # another session soon after this one (else the user lapses)
    back: float  # a lapsed user comes back on their own, after a long gap
    click: float  # a delivered message is clicked
    renew: float  # a policy is renewed


CHANNELS: tuple[Channel, ...] = (
    Channel("organic", 0.30, 0.25, 0.50, 0.15, 0.30, 0.82, 0.40, 0.20, 0.70),
    Channel("search", 0.25, 0.22, 0.45, 0.11, 0.25, 0.78, 0.35, 0.15, 0.60),
    Channel("referral", 0.10, 0.35, 0.60, 0.22, 0.35, 0.86, 0.45, 0.25, 0.75),
    Channel("social", 0.20, 0.12, 0.30, 0.06, 0.15, 0.65, 0.25, 0.10, 0.45),
    Channel("ads", 0.15, 0.08, 0.25, 0.035, 0.10, 0.55, 0.15, 0.06, 0.35),
)
_CUM_WEIGHTS = tuple(sum(c.weight for c in CHANNELS[: i + 1]) for i in range(len(CHANNELS)))

_DEFAULT_FUNNEL = (
    FunnelStage("visit", "visit"),
    FunnelStage("register", "register"),
    FunnelStage("verify", "verify"),
    FunnelStage("first_order", "order"),
    FunnelStage("repurchase", "order", 2),
)
_DEFAULT_THRESHOLDS = Thresholds(3 * DAY_MS, 3 * DAY_MS, 14 * DAY_MS, 60 * DAY_MS)


@dataclass(frozen=True, slots=True)
class _Plan:
    """What the profile decides: the core path's event types and the time scale."""

    visit: str  # first funnel stage: every session starts with it
    steps: tuple[str, ...]  # later stages up to and including the first order
    kinds: tuple[int, ...]  # per step: 0 register-like, 1 verify-like, 2 order
    order: str
    insurance: bool  # orders are policies, renewed with `renew`
    browse: str  # the browsing event of a session
    silent: int
    churn: int
    dead: int


def _plan(profile: Profile | None) -> _Plan:
    funnel = profile.funnel if profile else _DEFAULT_FUNNEL
    th = profile.thresholds if profile else _DEFAULT_THRESHOLDS
    revenue = profile.revenue_types if profile else frozenset({"order", "renew"})
    events = [s.event for s in funnel]
    insurance = "renew" in events or (profile is not None and profile.name == "insurance")
    order = next((e for e in events if e in revenue and e != "renew"), "order")
    steps: list[str] = []
    for stage in funnel[1:]:
        if stage.nth == 1 and stage.event not in steps and stage.event != "renew":
            steps.append(stage.event)
        if stage.event == order:
            break
    if order not in steps:
        steps.append(order)
    kinds = tuple(2 if e == order else 0 if i == 0 or e == "register" else 1 for i, e in enumerate(steps))
    return _Plan(
        visit=events[0],
        steps=tuple(steps),
        kinds=kinds,
        order=order,
        insurance=insurance,
        browse="quote" if insurance else "view",
        silent=th.silent_after,
        churn=th.churn_after,
        dead=th.dead_after,
    )


@dataclass(slots=True)
class _User:
    idx: int
    uid: str
    ch: Channel
    gap: float  # mean ms between sessions of an active spell
    stay: float
    heavy: bool
    probs: tuple[float, ...]  # per core-path step, from the channel
    step: int = 0  # core-path steps done
    orders: int = 0
    n: int = 0  # events emitted: the event id suffix
    last: int = 0  # ts of the last event
    policy: int = 0  # policies bought
    policy_end: int = 0
    term: int = 0
    premium: float = 0.0
    renew_at: int = 0  # 0: the current policy will not be renewed


class _Model:
    """The user behaviour shared by the history and the live generator."""

    def __init__(self, rng: random.Random, plan: _Plan, prefix: str, id_prefix: str) -> None:
        self.rng = rng
        self.plan = plan
        self.prefix = prefix
        self.id_prefix = id_prefix
        self.step_probs = tuple(tuple(_step_prob(c, k) for k in plan.kinds) for c in CHANNELS)

    def new_user(self, idx: int) -> _User:
        rng = self.rng
        r = rng.random()
        ch = CHANNELS[-1]
        for c, cum in zip(CHANNELS, _CUM_WEIGHTS, strict=True):
            if r < cum:
                ch = c
                break
        heavy = rng.random() < HEAVY_SHARE
        silent = self.plan.silent
        gap = silent / 20 if heavy else silent / rng.uniform(3.0, 6.0)
        stay = 0.96 if heavy else ch.stay
        probs = self.step_probs[CHANNELS.index(ch)]
        return _User(idx, f"{self.prefix}{idx}", ch, gap, stay, heavy, probs)

    def event(self, user: _User, etype: str, ts: int) -> dict[str, Any]:
        user.n += 1
        return {
            "event_id": f"{self.id_prefix}{user.uid}-{user.n}",
            "user_id": user.uid,
            "type": etype,
            "ts": ts,
        }

    def session(self, user: _User, ts: int, out: list[dict[str, Any]], spacing: float, renew: bool) -> int:
        """Append one session's events to `out`; returns the ts of its last event."""
        rng = self.rng
        plan = self.plan
        ch = user.ch
        first = user.n == 0
        pace = int(spacing * 60_000)
        ev = self.event(user, plan.visit, ts)
        if first:
            ev["channel"] = ch.name
        out.append(ev)
        steps = plan.steps
        if user.step and rng.random() < 0.6:
            ts += 1_000 + int(rng.random() * pace)
            out.append(self.event(user, "login", ts))
        views = int(rng.expovariate(0.5 if user.heavy else 1.2))
        for _ in range(views):
            ts += 1_000 + int(rng.random() * pace)
            out.append(self.event(user, plan.browse, ts))
        probs = user.probs
        while user.step < len(steps) - 1 and rng.random() < probs[user.step]:
            ts += 1_000 + int(rng.random() * pace)
            out.append(self.event(user, steps[user.step], ts))
            user.step += 1
        if renew and user.policy_end:
            ts += 1_000 + int(rng.random() * pace)
            out.append(self._renew(user, ts))
        elif user.step == len(steps) - 1:
            if rng.random() < probs[-1]:
                user.step += 1
                ts += 1_000 + int(rng.random() * pace)
                out.append(self._order(user, ts))
        elif user.step == len(steps):
            repeat = ch.repeat * (2.0 if user.heavy else 1.0) * (0.3 if plan.insurance else 1.0)
            if rng.random() < repeat:
                ts += 1_000 + int(rng.random() * pace)
                out.append(self._order(user, ts))
        user.last = ts
        return ts

    def _order(self, user: _User, ts: int) -> dict[str, Any]:
        rng = self.rng
        user.orders += 1
        ev = self.event(user, self.plan.order, ts)
        if not self.plan.insurance:
            ev["amount"] = round(rng.lognormvariate(4.0, 0.8) * (1.5 if user.heavy else 1.0), 2)
            return ev
        user.policy += 1
        term = rng.choices(POLICY_TERMS_DAYS, POLICY_TERM_WEIGHTS)[0] * DAY_MS
        user.term = term
        annual = rng.lognormvariate(6.0, 0.6)  # a median yearly premium of about 400
        user.premium = round(annual * (term / (365 * DAY_MS)) ** 0.7, 2)  # short cover costs more per day
        user.policy_end = (ts // DAY_MS + 1) * DAY_MS + term  # cover starts at the next midnight
        ev["amount"] = user.premium
        ev["properties"] = {
            "policy_id": self.policy_id(user),
            "policy_end": self._spell(user, user.policy_end),
        }
        self._decide_renewal(user)
        return ev

    def _renew(self, user: _User, ts: int) -> dict[str, Any]:
        user.orders += 1
        user.policy_end += user.term
        ev = self.event(user, "renew", ts)
        ev["amount"] = round(user.premium * self.rng.uniform(0.95, 1.1), 2)
        ev["properties"] = {
            "policy_id": self.policy_id(user),
            "policy_end": self._spell(user, user.policy_end),
        }
        self._decide_renewal(user)
        return ev

    def _decide_renewal(self, user: _User) -> None:
        rng = self.rng
        if rng.random() < user.ch.renew:
            window = min(30 * DAY_MS, user.term // 3)
            user.renew_at = user.policy_end - int(rng.random() * window) - HOUR_MS
        else:
            user.renew_at = 0

    def policy_id(self, user: _User) -> str:
        return f"{self.id_prefix}p-{user.uid}-{user.policy}"

    @staticmethod
    def _spell(user: _User, ms: int) -> int | str:
        """Both spellings the schema allows, so consumers meet both: RFC 3339 for odd users."""
        if user.idx & 1:
            return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return ms

    def message(self, user: _User, etype: str, ts: int, campaign: str, ref: str) -> dict[str, Any]:
        ev = self.event(user, etype, ts)
        ev["properties"] = {"campaign": campaign, "trigger_id": f"{self.id_prefix}{campaign}-{ref}"}
        return ev


def _step_prob(ch: Channel, kind: int) -> float:
    return (ch.register, ch.verify, ch.order)[kind]


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
    model = _Model(random.Random(seed), _plan(profile), user_prefix, f"g{seed}-")
    return _stream(model, users, start_ms, start_ms + int(days * DAY_MS), seed)


def _stream(model: _Model, users: int, start_ms: int, end_ms: int, seed: int) -> Iterator[dict[str, Any]]:
    arrivals = _arrivals(random.Random(f"arrivals-{seed}"), users, start_ms, end_ms - start_ms)
    heap: list[tuple[int, int, _User]] = []  # next session of each user still to come back
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
    model: _Model, user: _User, last: int, out: list[dict[str, Any]], end_ms: int
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
    plan = _plan(profile)
    prefix = f"live{seed}-" if user_prefix is None else user_prefix
    pool: dict[int, _User] = {}
    tick_ms = int(tick_s * 1000)
    prev = 0
    model: _Model | None = None
    owed = 0.0
    while True:
        started = time.monotonic()
        now = clock()
        if model is None:
            prev = now - tick_ms
            model = _Model(rng, plan, prefix, f"l{seed}.{now:x}-")
        span = max(now - prev, 1)
        owed += rate_per_s * span / 1000
        batch: list[dict[str, Any]] = []
        touched: list[_User] = []
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
