"""The synthetic users' behaviour: acquisition channels, the profile's plan and sessions.

A channel sets how likely its users are to take each core-path step, to stay, to come
back and to renew; the plan reads from the profile which events form the core path and
how long "quiet" is. `Model` turns one user and one moment into a session's events, for
the history stream and the live feed alike (`service.dev.generator`).
"""

from __future__ import annotations

import random
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
class Plan:
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


def plan_for(profile: Profile | None) -> Plan:
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
    return Plan(
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
class SimUser:
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


class Model:
    """The user behaviour shared by the history and the live generator."""

    def __init__(self, rng: random.Random, plan: Plan, prefix: str, id_prefix: str) -> None:
        self.rng = rng
        self.plan = plan
        self.prefix = prefix
        self.id_prefix = id_prefix
        self.step_probs = tuple(tuple(_step_prob(c, k) for k in plan.kinds) for c in CHANNELS)

    def new_user(self, idx: int) -> SimUser:
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
        return SimUser(idx, f"{self.prefix}{idx}", ch, gap, stay, heavy, probs)

    def event(self, user: SimUser, etype: str, ts: int) -> dict[str, Any]:
        user.n += 1
        return {
            "event_id": f"{self.id_prefix}{user.uid}-{user.n}",
            "user_id": user.uid,
            "type": etype,
            "ts": ts,
        }

    def session(self, user: SimUser, ts: int, out: list[dict[str, Any]], spacing: float, renew: bool) -> int:
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

    def _order(self, user: SimUser, ts: int) -> dict[str, Any]:
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

    def _renew(self, user: SimUser, ts: int) -> dict[str, Any]:
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

    def _decide_renewal(self, user: SimUser) -> None:
        rng = self.rng
        if rng.random() < user.ch.renew:
            window = min(30 * DAY_MS, user.term // 3)
            user.renew_at = user.policy_end - int(rng.random() * window) - HOUR_MS
        else:
            user.renew_at = 0

    def policy_id(self, user: SimUser) -> str:
        return f"{self.id_prefix}p-{user.uid}-{user.policy}"

    @staticmethod
    def _spell(user: SimUser, ms: int) -> int | str:
        """Both spellings the schema allows, so consumers meet both: RFC 3339 for odd users."""
        if user.idx & 1:
            return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return ms

    def message(self, user: SimUser, etype: str, ts: int, campaign: str, ref: str) -> dict[str, Any]:
        ev = self.event(user, etype, ts)
        ev["properties"] = {"campaign": campaign, "trigger_id": f"{self.id_prefix}{campaign}-{ref}"}
        return ev


def _step_prob(ch: Channel, kind: int) -> float:
    return (ch.register, ch.verify, ch.order)[kind]
