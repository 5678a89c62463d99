"""Closing the loop: what happened to the triggers, and what they achieved.

Computed from the committed counters (`tg|...` and `to|...`), per trigger type and
channel. Rates are over what the rate is about: clicks, payment clicks and payments
per delivered message; returns (recall success) and orders per fired trigger, for the
treated users and for the holdout group, whose difference is the uplift.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from service.core import counters as ctr
from service.core.indicators import ratio
from service.core.records import NO_CHANNEL
from service.core.trigger_rules import KINDS, RECALL_STATES, recall_plan
from service.core.triggers import OUTCOMES, STATUSES


def _block(
    status: Mapping[str, float], treated: Mapping[str, float], holdout: Mapping[str, float]
) -> dict[str, Any]:
    sent, held = status.get("sent", 0), status.get("held_out", 0)
    delivered = treated.get("message_delivered", 0)
    return_t, return_h = ratio(treated.get("returned", 0), sent), ratio(holdout.get("returned", 0), held)
    order_t, order_h = ratio(treated.get("ordered", 0), sent), ratio(holdout.get("ordered", 0), held)
    return {
        **{s: int(status.get(s, 0)) for s in STATUSES},
        "outcomes": {o: int(treated.get(o, 0)) for o in OUTCOMES},
        "holdout_outcomes": {o: int(holdout.get(o, 0)) for o in ("returned", "ordered")},
        "delivery_rate": ratio(delivered, sent),
        "click_through_rate": ratio(treated.get("message_click", 0), delivered),
        "payment_click_rate": ratio(treated.get("payment_click", 0), delivered),
        "payment_rate": ratio(treated.get("paid", 0), delivered),
        "recall_success_rate": return_t,
        "conversion_rate": order_t,
        "holdout_recall_success_rate": return_h,
        "holdout_conversion_rate": order_h,
        "uplift": {
            "recall_success": None if return_t is None or return_h is None else return_t - return_h,
            "conversion": None if order_t is None or order_h is None else order_t - order_h,
        },
    }


def trigger_summary(totals: Mapping[str, float], channel: str | None = None) -> dict[str, Any]:
    """Per trigger type (and per channel within it): statuses, outcomes, rates and uplift."""
    status: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    outcome: dict[tuple[str, str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    # recalls by the state they recalled the user from: kept apart as "recall:<state>"
    for name, value in totals.items():
        if name.startswith(("tg|", "tgr|")):
            head, kind, ch, what = ctr.split(name)
            status[kind if head == "tg" else f"recall:{kind}", ch][what] += value
        elif name.startswith(("to|", "tor|")):
            head, kind, ch, group, what = ctr.split(name)
            outcome[kind if head == "to" else f"recall:{kind}", ch, group][what] += value
    out = []
    for kind in KINDS:
        block = _kind(kind, status, outcome, channel)
        if kind == "recall":
            block["by_origin"] = [
                {
                    "origin": state,
                    "plan": recall_plan(state),
                    **_kind(f"recall:{state}", status, outcome, channel),
                }
                for state in RECALL_STATES
            ]
        out.append(block)
    return {"triggers": out}


def _kind(
    kind: str,
    status: Mapping[tuple[str, str], Mapping[str, float]],
    outcome: Mapping[tuple[str, str, str], Mapping[str, float]],
    wanted: str | None,
) -> dict[str, Any]:
    """One trigger type's block: its totals, then per channel."""
    empty: Mapping[str, float] = {}
    channels = sorted({ch for k, ch in status if k == kind} | {ch for k, ch, _ in outcome if k == kind})
    if wanted is not None:
        channels = [ch for ch in channels if ch == wanted]
    per_channel = []
    sums: list[dict[str, float]] = [defaultdict(float), defaultdict(float), defaultdict(float)]
    for ch in channels:
        parts = (
            status.get((kind, ch), empty),
            outcome.get((kind, ch, "treated"), empty),
            outcome.get((kind, ch, "holdout"), empty),
        )
        for total, part in zip(sums, parts, strict=True):
            for key, value in part.items():
                total[key] += value
        per_channel.append({"channel": None if ch == NO_CHANNEL else ch, **_block(*parts)})
    return {"type": kind.partition(":")[0], **_block(*sums), "by_channel": per_channel}
