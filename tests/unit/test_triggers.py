"""Triggers in the pure core: each kind fires once at its (event-)time, whatever the batching.

Recall, renewal, expiry and onboarding are checked one scenario at a time, then the
guard rails (suppression, quiet hours, frequency cap, holdout) and outcome attribution;
property tests check that batch cuts and sweeps never change which triggers fire, and
that the sweep's range queries find every user with something due.
"""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.core.batch import apply_events, sweep
from service.core.cloudevents import trigger_cloudevent
from service.core.events import Event
from service.core.profile import Profile, ProfileError, parse_profile
from service.core.records import FiredTrigger, PendingTrigger, UserRecord
from service.core.trigger_rules import QuietHours
from service.core.trigger_summary import trigger_summary
from service.core.triggers import Fired, describe, in_holdout, quiet_end, recall_offsets, trigger_id
from tests.unit.test_batch import DAY, FUNNEL, HOUR, LIFECYCLE, T0, Store, histories, in_batches

MIN = 60_000


def profile(**triggers: Any) -> Profile:
    return parse_profile(
        {
            "name": "trig",
            "lifecycle": LIFECYCLE,  # new 1d, silent 2d, churned 5d, dead 12d
            "activity_types": ["visit", "register", "order", "renew", "message_click", "paid"],
            "funnel": FUNNEL,
            "rfm": {"monetary": 100},
            "triggers": triggers,
        }
    )


PLAIN = profile()


def ev(eid: str, uid: str, ts: int, etype: str = "visit", **kw: Any) -> Event:
    return Event(eid, uid, etype, ts, kw.pop("channel", None), kw.pop("amount", None), kw or None)


class Run:
    """Applies events and sweeps as the worker would, one partition."""

    def __init__(self, p: Profile = PLAIN) -> None:
        self.p = p
        self.store = Store()
        self.swept = T0

    def events(self, *events: Event) -> Run:
        self.store.apply(list(events), self.swept, self.p)
        return self

    def until(self, now: int) -> Run:
        self.store.sweep(self.swept, now, self.p)
        self.swept = now
        return self

    @property
    def fired(self) -> list[tuple[str, str, int]]:
        return [(f.kind, f.user_id, f.at) for f in self.store.fired]

    def count(self, kind: str, status: str) -> int:
        return sum(
            n for k, n in self.store.counts.items() if k.startswith(f"tg|{kind}|") and k.endswith(status)
        )


# --- recall -----------------------------------------------------------------------------------


def test_recall_fires_once_per_state_entered_at_the_right_time() -> None:
    run = Run().events(ev("a", "u", T0)).until(T0 + 30 * DAY)
    assert run.fired == [
        ("recall", "u", T0 + 2 * DAY),
        ("recall", "u", T0 + 5 * DAY),
        ("recall", "u", T0 + 12 * DAY),
    ]
    states = [(f.data["state"], f.data["recall"], f.tier) for f in run.store.fired]
    assert states == [
        ("silent", "transaction", "small_coupon"),
        ("churned", "transaction", "large_coupon"),
        ("dead", "login", "login_bonus"),
    ]
    run.until(T0 + 60 * DAY)
    assert len(run.fired) == 3  # nothing fires twice


def test_recall_due_before_a_late_sweep_fires_when_the_users_next_event_is_applied() -> None:
    """No sweep ran between: the event that ends the idle period fires what was due before it."""
    run = Run().events(ev("a", "u", T0), ev("b", "u", T0 + 3 * DAY))
    assert run.fired == [("recall", "u", T0 + 2 * DAY)]
    run.until(T0 + 4 * DAY)
    assert run.fired == [("recall", "u", T0 + 2 * DAY)]


def test_recall_delay_and_a_return_before_it_suppresses_nothing_but_the_recall() -> None:
    p = profile(recall={"silent": {"delay": "1d"}, "churned": False, "dead": False})
    run = Run(p).events(ev("a", "u", T0)).until(T0 + 2 * DAY + HOUR)
    assert run.fired == []  # silent since 2d, recall due at 3d
    run.events(ev("b", "u", T0 + 2 * DAY + 2 * HOUR)).until(T0 + 4 * DAY)
    assert run.fired == []  # came back first: that idle period needs no recall
    run.until(T0 + 6 * DAY)
    assert run.fired == [("recall", "u", T0 + 2 * DAY + 2 * HOUR + 3 * DAY)]


def test_recall_delay_must_stay_inside_its_state() -> None:
    with pytest.raises(ProfileError, match=r"triggers\.recall\.silent\.delay"):
        profile(recall={"silent": {"delay": "3d"}})  # silent 2d .. churned 5d


def test_recall_ids_follow_the_idle_period() -> None:
    run = Run().events(ev("a", "u", T0)).until(T0 + 3 * DAY)
    run.events(ev("b", "u", T0 + 4 * DAY)).until(T0 + 7 * DAY)
    first, second = run.store.fired
    assert first.id == trigger_id("recall", "u", f"silent|{T0}")
    assert second.id == trigger_id("recall", "u", f"silent|{T0 + 4 * DAY}")


def test_advisor_flag_for_high_value_users() -> None:
    run = Run().events(ev("a", "rich", T0, "order", amount=150.0), ev("b", "poor", T0, "order", amount=5.0))
    run.until(T0 + 3 * DAY)
    assert {f.user_id: f.advisor for f in run.store.fired} == {"rich": True, "poor": False}


# --- renewal and expiry -------------------------------------------------------------------------


def test_renewal_reminders_and_expiry_at_the_profile_offsets() -> None:
    end = T0 + 40 * DAY
    p = profile(recall={"silent": False, "churned": False, "dead": False})
    run = Run(p).events(ev("a", "u", T0, "order", amount=10.0, policy_id="P1", policy_end=end))
    assert [e[0] for e in run.store.records["u"].pending] == [end - 30 * DAY, end - 7 * DAY, end - DAY, end]
    assert run.store.due["u"] == end - 30 * DAY
    run.until(end + DAY)
    assert run.fired == [
        ("renewal", "u", end - 30 * DAY),
        ("renewal", "u", end - 7 * DAY),
        ("renewal", "u", end - DAY),
        ("expiry", "u", end),
    ]
    assert [f.data["days_before"] for f in run.store.fired[:3]] == [30, 7, 1]
    assert "u" not in run.store.due


def test_a_renewal_cancels_the_remaining_reminders_and_schedules_the_new_end() -> None:
    end, new_end = T0 + 40 * DAY, T0 + 405 * DAY
    p = profile(recall={"silent": False, "churned": False, "dead": False})
    run = Run(p).events(ev("a", "u", T0, "order", amount=10.0, policy_id="P1", policy_end=end))
    run.until(end - 20 * DAY)
    renew = ev("b", "u", end - 10 * DAY, "renew", amount=10.0, policy_id="P1", policy_end=new_end)
    run.events(renew).until(end + 5 * DAY)
    assert run.fired == [("renewal", "u", end - 30 * DAY)]
    assert run.count("renewal", "cancelled") == 2 and run.count("expiry", "cancelled") == 1
    assert run.store.records["u"].pending[0][0] == new_end - 30 * DAY


def test_a_policy_id_without_an_end_cancels_and_an_rfc3339_end_is_accepted() -> None:
    p = profile(recall={"silent": False, "churned": False, "dead": False})
    end = datetime.fromtimestamp((T0 + 40 * DAY) / 1000, UTC).isoformat()
    run = Run(p).events(ev("a", "u", T0, "order", policy_id="P1", policy_end=end))
    assert len(run.store.records["u"].pending) == 4
    run.events(ev("b", "u", T0 + DAY, "order", policy_id="P1"))
    assert run.store.records["u"].pending == [] and run.store.due == {}


# --- onboarding ---------------------------------------------------------------------------------


def test_onboarding_fires_when_no_first_order_follows_registration() -> None:
    p = profile(recall={"silent": False, "churned": False, "dead": False}, onboarding={"window": "3d"})
    run = Run(p).events(ev("a", "u", T0, "register"), ev("b", "v", T0, "register"))
    run.events(ev("c", "v", T0 + DAY, "order", amount=3.0)).until(T0 + 5 * DAY)
    assert run.fired == [("onboarding", "u", T0 + 3 * DAY)]
    assert run.count("onboarding", "suppressed") == 1
    run.events(ev("d", "u", T0 + 6 * DAY, "register")).until(T0 + 20 * DAY)
    assert len(run.fired) == 1  # one onboarding per user


# --- guard rails --------------------------------------------------------------------------------


def test_quiet_hours_delay_and_a_return_meanwhile_suppresses() -> None:
    # T0 is 2023-11-15T00:00Z (a day boundary); recall due 2d later at 00:00 UTC, inside 22:00-08:00
    p = profile(
        recall={"churned": False, "dead": False},
        quiet_hours={"start": "22:00", "end": "08:00", "time_zone": "UTC"},
    )
    assert T0 % DAY == 0
    run = Run(p).events(ev("a", "u", T0), ev("b", "v", T0)).until(T0 + 2 * DAY + HOUR)
    assert run.fired == [] and run.count("recall", "deferred") == 2
    run.events(ev("c", "v", T0 + 2 * DAY + 7 * HOUR)).until(T0 + 2 * DAY + 9 * HOUR)
    assert run.fired == [("recall", "u", T0 + 2 * DAY + 8 * HOUR)]
    (f,) = run.store.fired
    assert f.due == T0 + 2 * DAY and f.at == T0 + 2 * DAY + 8 * HOUR
    assert run.count("recall", "suppressed") == 1


def test_a_deferred_trigger_fires_before_what_falls_due_after_its_resume_time() -> None:
    # onboarding due 04:00 (quiet) resumes at 08:00; the silent recall is due a day later at
    # 10:00. One sweep over both or two sweeps either side of 08:00 fire them in that order,
    # so the frequency cap and the record's recent triggers see the same history.
    p = profile(
        recall={"churned": False, "dead": False},
        quiet_hours={"start": "22:00", "end": "08:00", "time_zone": "UTC"},
        onboarding={"window": "2d"},
        frequency_cap={"max": 1, "per": "3d"},
    )
    evs = (ev("a", "u", T0 + 4 * HOUR, "register"), ev("b", "u", T0 + DAY + 10 * HOUR))
    once = Run(p).events(*evs).until(T0 + 10 * DAY)
    split = Run(p).events(*evs).until(T0 + 3 * DAY).until(T0 + 10 * DAY)
    resumed, recall_due = T0 + 2 * DAY + 8 * HOUR, T0 + 3 * DAY + 10 * HOUR
    assert split.fired == [("onboarding", "u", resumed)]
    assert split.count("recall", "capped") == 1
    assert once.fired == split.fired
    assert once.store.records == split.store.records
    assert [r.at for r in once.store.records["u"].recent] == [resumed]
    assert once.store.records["u"].sent == [resumed]
    assert recall_due - resumed < 3 * DAY  # inside the cap's window: the order decides


def test_quiet_end_across_midnight_and_in_a_time_zone() -> None:
    q = QuietHours(22 * 60, 8 * 60, "Asia/Shanghai")  # UTC+8
    at = T0 + 15 * HOUR  # 23:00 in Shanghai
    assert quiet_end(at, q) == T0 + DAY  # 08:00 Shanghai next morning = 00:00 UTC
    assert quiet_end(T0 + 3 * HOUR, q) is None  # 11:00 Shanghai
    same_day = QuietHours(12 * 60, 13 * 60, "UTC")
    assert quiet_end(T0 + 12 * HOUR + 30 * MIN, same_day) == T0 + 13 * HOUR
    assert quiet_end(T0 + 13 * HOUR, same_day) is None


QUIET_ZONES = ["UTC", "Asia/Shanghai", "America/New_York", "America/St_Johns", "Australia/Lord_Howe"]
YEAR_2026 = (1_767_225_600_000, 1_798_761_600_000)


def _transitions(zone: str) -> list[int]:
    """The instants of 2026 (to the quarter hour) at which `zone` changes its offset."""
    tz = ZoneInfo(zone)
    step = 15 * MIN
    out, previous = [], None
    for ms in range(YEAR_2026[0], YEAR_2026[1], step):
        offset = datetime.fromtimestamp(ms / 1000, tz).utcoffset()
        if previous is not None and offset != previous:
            out.append(ms)
        previous = offset
    return out


TRANSITIONS = {zone: _transitions(zone) for zone in QUIET_ZONES}


def _quiet_end_by_the_clock(at: int, q: QuietHours) -> int | None:
    """Watch a clock in the zone from `at`, minute by minute, until it shows a minute outside the
    quiet hours (zoneinfo's conversion of each instant; no wall-time arithmetic)."""
    tz = ZoneInfo(q.zone)
    t = at
    while True:
        local = datetime.fromtimestamp(t / 1000, tz)
        if not q.contains(local.hour * 60 + local.minute):
            return None if t == at else t
        t = t - t % MIN + MIN


@st.composite
def quiet_moments(draw: st.DrawFn) -> tuple[int, QuietHours]:
    zone = draw(st.sampled_from(QUIET_ZONES))
    if TRANSITIONS[zone] and draw(st.booleans()):  # within a day and a half of an offset change
        at = draw(st.sampled_from(TRANSITIONS[zone])) + draw(st.integers(-36 * HOUR, 36 * HOUR))
    else:
        at = draw(st.integers(*YEAR_2026))
    start, end = draw(st.integers(0, 1439)), draw(st.integers(0, 1439))
    return at, QuietHours(start, end if end != start else (start + 1) % 1440, zone)


@settings(max_examples=1500, deadline=None)
@given(quiet_moments())
def test_quiet_hours_end_when_the_local_clock_leaves_them_in_every_zone_and_across_offset_changes(
    moment: tuple[int, QuietHours],
) -> None:
    at, q = moment
    assert quiet_end(at, q) == _quiet_end_by_the_clock(at, q)


def test_the_quiet_zones_change_offset_in_2026_as_expected() -> None:
    assert [len(TRANSITIONS[z]) for z in QUIET_ZONES] == [0, 0, 2, 2, 2]


def test_frequency_cap_per_user_per_window() -> None:
    p = profile(frequency_cap={"max": 1, "per": "7d"})
    run = Run(p).events(ev("a", "u", T0)).until(T0 + 20 * DAY)
    assert [f[2] for f in run.fired] == [T0 + 2 * DAY, T0 + 12 * DAY]
    assert run.count("recall", "capped") == 1  # churned at 5d: one sent 3 days before


def test_holdout_is_stable_and_near_the_configured_rate() -> None:
    users = [f"user-{i}" for i in range(20_000)]
    held = [u for u in users if in_holdout(u, 10)]
    assert 0.09 < len(held) / len(users) < 0.11
    assert held == [u for u in users if in_holdout(u, 10)]
    assert not any(in_holdout(u, 0) for u in users)
    p = profile(holdout_percent=10, recall={"churned": False, "dead": False})
    run = Run(p).events(*(ev(f"e{i}", u, T0) for i, u in enumerate(users[:2000]))).until(T0 + 3 * DAY)
    flagged = {f.user_id for f in run.store.fired if f.holdout}
    assert flagged == {u for u in users[:2000] if in_holdout(u, 10)}
    assert run.count("recall", "held_out") == len(flagged)
    assert run.count("recall", "sent") == 2000 - len(flagged)


# --- outcomes -----------------------------------------------------------------------------------


def test_outcomes_are_attributed_once_within_the_window() -> None:
    p = profile(attribution_window="3d")
    run = Run(p).events(ev("a", "u", T0)).until(T0 + 2 * DAY)
    (f,) = run.store.fired
    run.events(
        ev("b", "u", T0 + 2 * DAY + HOUR, "message_delivered", trigger_id=f.id),
        ev("c", "u", T0 + 2 * DAY + 2 * HOUR, "message_click", trigger_id=f.id),
        ev("d", "u", T0 + 2 * DAY + 3 * HOUR, "message_click", trigger_id=f.id),
        ev("e", "u", T0 + 2 * DAY + 4 * HOUR, "paid", trigger_id="someone-else"),
        ev("f", "u", T0 + 2 * DAY + 5 * HOUR, "order", amount=4.0),
    )
    outcomes = Counter({k: n for k, n in run.store.counts.items() if k.startswith("to|")})
    assert outcomes == Counter(
        {
            "to|recall|-|treated|message_delivered": 1,
            "to|recall|-|treated|message_click": 1,
            "to|recall|-|treated|returned": 1,
            "to|recall|-|treated|ordered": 1,
        }
    )
    assert describe(run.store.records["u"])["fired"][0]["outcomes"] == [
        "message_delivered",
        "message_click",
        "returned",
        "ordered",
    ]


def test_recalls_and_their_outcomes_are_counted_by_the_state_recalled_from() -> None:
    """Silent and churned users get a transaction recall, dead users a login recall: each is
    counted under its origin state, and a return within the window is that origin's success."""
    p = profile(attribution_window="1d")
    run = Run(p).events(ev("a", "u", T0)).until(T0 + 12 * DAY)
    fired = describe(run.store.records["u"])["fired"]
    assert [f["origin"] for f in fired] == ["silent", "churned", "dead"]
    run.events(ev("b", "u", T0 + 12 * DAY + HOUR))  # back an hour after the login recall
    recalls = {k: n for k, n in run.store.counts.items() if k.startswith(("tgr|", "tor|"))}
    assert recalls == {
        "tgr|silent|-|sent": 1,
        "tgr|churned|-|sent": 1,
        "tgr|dead|-|sent": 1,
        "tor|dead|-|treated|returned": 1,
    }
    assert run.count("recall", "sent") == 3  # the plain counters stay the sum over origins
    summary = trigger_summary(run.store.counts)["triggers"]
    (recall,) = [t for t in summary if t["type"] == "recall"]
    by_origin = {o["origin"]: o for o in recall["by_origin"]}
    assert {o: (b["plan"], b["sent"], b["outcomes"]["returned"]) for o, b in by_origin.items()} == {
        "silent": ("transaction", 1, 0),
        "churned": ("transaction", 1, 0),
        "dead": ("login", 1, 1),
    }
    assert by_origin["dead"]["recall_success_rate"] == 1.0
    assert by_origin["silent"]["recall_success_rate"] == 0.0


def test_recall_success_by_origin_compares_treated_with_the_holdout() -> None:
    p = profile(attribution_window="2d", holdout_percent=50, recall={"churned": False, "dead": False})
    run = Run(p)
    for i in range(40):
        run.events(ev(f"a{i}", f"u{i}", T0))
    run.until(T0 + 2 * DAY + HOUR)
    run.events(*(ev(f"b{i}", f"u{i}", T0 + 3 * DAY) for i in range(0, 40, 2)))  # half come back
    held = {f.user_id for f in run.store.fired if f.holdout}
    assert 0 < len(held) < 40
    summary = trigger_summary(run.store.counts)["triggers"]
    (recall,) = [t for t in summary if t["type"] == "recall"]
    silent = next(o for o in recall["by_origin"] if o["origin"] == "silent")
    back = {f"u{i}" for i in range(0, 40, 2)}
    assert silent["sent"] == 40 - len(held) and silent["held_out"] == len(held)
    assert silent["outcomes"]["returned"] == len(back - held)
    assert silent["holdout_outcomes"]["returned"] == len(back & held)
    assert silent["uplift"]["recall_success"] == pytest.approx(
        len(back - held) / (40 - len(held)) - len(back & held) / len(held)
    )
    assert {k: v for k, v in silent.items() if k not in ("origin", "plan", "by_channel")} == {
        k: v for k, v in recall.items() if k not in ("by_origin", "by_channel")
    }  # the only recalls here are from silent: the origin's block is the whole


def test_activity_after_the_window_is_not_attributed() -> None:
    p = profile(attribution_window="1d", recall={"churned": False, "dead": False})
    run = Run(p).events(ev("a", "u", T0)).until(T0 + 2 * DAY)
    run.events(ev("b", "u", T0 + 3 * DAY + 1))
    assert not any(k.startswith("to|") for k in run.store.counts)


# --- records and events -------------------------------------------------------------------------


def test_record_with_triggers_round_trips_and_plain_records_stay_short() -> None:
    plain = UserRecord(T0, T0, T0)
    assert UserRecord.unpack(plain.pack()) == plain
    assert plain.pack().count(b",") == 8
    full = UserRecord(
        T0, T0, T0, "ads", 1, 2, 3.5, {"order": 2}, 1,
        pending=[PendingTrigger(T0 + DAY, "id", "renewal", T0, {"policy_id": "P"})],
        sent=[T0], policies={"P": T0 + DAY}, recent=[FiredTrigger("x", "recall", T0, 5)], onboarding=T0,
    )  # fmt: skip
    assert UserRecord.unpack(full.pack()) == full
    # entries are stored as plain JSON arrays, as they always were: existing state reads the same
    stored = (
        f'[{T0},{T0},{T0},"ads",1,2,3.5,{{"order":2}},1,'
        f'[[{T0 + DAY},"id","renewal",{T0},{{"policy_id":"P"}}]],'
        f'[{T0}],{{"P":{T0 + DAY}}},[["x","recall",{T0},5]],{T0}]'
    ).encode()
    assert full.pack() == stored and UserRecord.unpack(stored) == full


def test_cloudevent_of_a_fired_trigger() -> None:
    f = Fired("ab" * 16, "renewal", "u1", "ads", T0, T0, "renewal_reminder", False, True,
              {"policy_id": "P1", "policy_end": T0 + DAY, "days_before": 1})  # fmt: skip
    ce = trigger_cloudevent(f, "/lifecycle", "dev.userops")
    assert ce["specversion"] == "1.0" and ce["id"] == f.id and ce["subject"] == "u1"
    assert ce["type"] == "dev.userops.lifecycle.renewal.v1"
    assert ce["time"] == "2023-11-15T00:00:00.000Z"
    assert ce["data"]["policy_end"] == "2023-11-16T00:00:00.000Z"
    assert ce["data"]["delivery"] == "advisor" and ce["data"]["holdout"] is False
    assert ce["data"]["reason"] == "policy P1 ends in 1 day(s)"


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ({"recall": {"silent": {"tier": "has space"}}}, "triggers.recall.silent.tier"),
        ({"quiet_hours": {"start": "25:00", "end": "08:00"}}, "triggers.quiet_hours.start"),
        ({"quiet_hours": {"start": "22:00", "end": "08:00", "time_zone": "Mars/Base"}}, "time_zone"),
        ({"frequency_cap": {"max": 0}}, "triggers.frequency_cap.max"),
        ({"holdout_percent": 80}, "triggers.holdout_percent"),
        ({"renewal": {"reminders": ["soon"]}}, r"triggers.renewal.reminders\[0\]"),
        ({"onboarding": {"after": []}}, "triggers.onboarding.after"),
        ({"surprise": 1}, "triggers.surprise"),
    ],
)
def test_bad_trigger_sections_name_the_field(section: dict[str, Any], field: str) -> None:
    with pytest.raises(ProfileError, match=field):
        parse_profile({"name": "x", "lifecycle": LIFECYCLE, "funnel": FUNNEL, "triggers": section})


# --- properties ---------------------------------------------------------------------------------

GUARDED = profile(
    frequency_cap={"max": 2, "per": "3d"},
    quiet_hours={"start": "20:00", "end": "06:00", "time_zone": "UTC"},
    holdout_percent=30,
    onboarding={"window": "2d"},
)
LIGHT = settings(max_examples=150, deadline=None)


def run_all(
    events: list[Event],
    cuts: list[int],
    sweep_after: list[bool],
    final: int,
    tail: tuple[int, ...] | list[int] = (),
) -> Store:
    """Apply `events` in batches cut at `cuts`, sweeping to each batch's clock where asked,
    then sweep on to `final` in steps (`tail`: minutes past the last event)."""
    store = Store()
    swept = T0
    for batch, do_sweep in itertools.zip_longest(in_batches(events, cuts), sweep_after):
        if batch:
            store.apply(batch, swept, GUARDED)
            if do_sweep:
                now = max(swept, *(e.ts for e in batch))
                store.sweep(swept, now, GUARDED)
                swept = now
    last = max([swept, *(e.ts for e in events)])
    for now in sorted({last + minutes * MIN for minutes in tail if last + minutes * MIN < final}):
        store.sweep(swept, now, GUARDED)
        swept = now
    store.sweep(swept, final, GUARDED)
    return store


def with_policies(events: list[Event]) -> list[Event]:
    """Give the generated orders a policy, so renewal schedules and cancellations happen too."""
    out = []
    for e in events:
        if e.type in ("order", "renew"):
            e = Event(e.event_id, e.user_id, e.type, e.ts, e.channel, e.amount,
                      {"policy_id": "P", "policy_end": e.ts + 9 * DAY})  # fmt: skip
        out.append(e)
    return out


@LIGHT
@given(
    histories(),
    st.lists(st.integers(0, 100), max_size=5),
    st.lists(st.booleans(), max_size=6),
    st.lists(st.integers(1, 40 * 24 * 60), max_size=6),
)
def test_batch_cuts_and_sweeps_never_change_what_fires(
    events: list[Event], cuts: list[int], sweep_after: list[bool], tail: list[int]
) -> None:
    events = with_policies(events)
    final = max(e.ts for e in events) + 40 * DAY
    one = run_all(events, [], [], final)
    many = run_all(events, cuts, sweep_after, final, tail)
    assert sorted(many.fired, key=repr) == sorted(one.fired, key=repr)
    assert many.records == one.records
    kinds = ("tg|", "to|", "tgr|", "tor|")
    tg = {k: n for k, n in one.counts.items() if k.startswith(kinds) and n}
    assert {k: n for k, n in many.counts.items() if k.startswith(kinds) and n} == tg
    # recalls by origin add up to the recall counters, status by status and outcome by outcome
    by_origin: Counter[str] = Counter()
    for k, n in tg.items():
        if k.startswith(("tgr|", "tor|")):
            head, _origin, *rest = k.split("|")
            by_origin["|".join([head[:2], "recall", *rest])] += n
    assert by_origin == Counter({k: n for k, n in tg.items() if k.startswith(("tg|recall|", "to|recall|"))})
    ids = [f.id for f in one.fired]
    assert len(ids) == len(set(ids))  # a trigger fires once
    for run in (one, many):  # each user's triggers are decided in time order, deferrals included
        last: dict[str, int] = {}
        for f in run.fired:
            assert f.at >= last.get(f.user_id, f.at), f
            last[f.user_id] = f.at


@LIGHT
@given(
    histories(ordered=False),
    st.lists(st.integers(0, 100), max_size=4),
    st.lists(st.integers(0, 5 * DAY), max_size=4),
)
def test_range_queries_find_every_user_with_a_trigger_due(
    events: list[Event], cuts: list[int], gaps: list[int]
) -> None:
    events = with_policies(events)
    store = Store()
    swept = T0
    offsets = recall_offsets(GUARDED)
    for batch, gap in itertools.zip_longest(in_batches(events, cuts), gaps):
        if batch:
            store.apply(batch, swept, GUARDED)
        now = max([swept, *(e.ts for e in batch or [])]) + (gap or 0)
        candidates = {u: store.records[u] for u, due in store.due.items() if due <= now}
        for scores in store.active.values():
            for uid, last in scores.items():
                if any(swept - x < last <= now - x for x in offsets):
                    candidates[uid] = store.records[uid]
        some = sweep(candidates, swept, now, GUARDED)
        every = sweep(store.records, swept, now, GUARDED)
        assert sorted(some.triggers.fired, key=repr) == sorted(every.triggers.fired, key=repr)
        assert some.records == every.records
        store.sweep(swept, now, GUARDED)
        swept = now


def test_apply_events_leaves_the_stored_records_untouched() -> None:
    stored = {
        "u": UserRecord(
            T0, T0, T0, pending=[PendingTrigger(T0 + DAY, "x", "onboarding", T0, {"tier": "t", "after": "r"})]
        )
    }
    before = stored["u"].pack()
    apply_events(stored, [ev("a", "u", T0 + 2 * DAY)], T0, PLAIN)
    assert stored["u"].pack() == before
