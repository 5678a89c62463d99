"""Fired triggers as CloudEvents 1.0 in structured JSON mode (the trigger topic's messages).

The `id` is the trigger's deterministic id, so a redelivery after a crash carries the same
id and a downstream system de-duplicates on it (CloudEvents: source + id is unique).
"""

from __future__ import annotations

from typing import Any

import orjson

from service.core.instants import iso_ms
from service.core.records import NO_CHANNEL
from service.core.triggers import Fired

CONTENT_TYPE = "application/cloudevents+json"

# The Kafka binding's structured mode: the whole event is the message value, and this
# header says so to CloudEvents SDKs and routers.
STRUCTURED_CONTENT_TYPE = b"application/cloudevents+json; charset=UTF-8"


def reason(f: Fired) -> str:
    d = f.data
    if f.kind == "recall":
        return f"entered {d['state']}: {d['recall']} recall"
    if f.kind == "renewal":
        return f"policy {d['policy_id']} ends in {d['days_before']} day(s)"
    if f.kind == "expiry":
        return f"policy {d['policy_id']} ended without renewal"
    return f"no first order within the onboarding window after {d['after']}"


def trigger_cloudevent(f: Fired, source: str, type_prefix: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "kind": f.kind,
        "reason": reason(f),
        "user_id": f.user_id,
        "channel": None if f.channel == NO_CHANNEL else f.channel,
        "due": iso_ms(f.due),
        "incentive_tier": f.tier,
        "holdout": f.holdout,
        "delivery": "advisor" if f.advisor else "standard",
        **f.data,
    }
    if "policy_end" in data:
        data["policy_end"] = iso_ms(int(data["policy_end"]))
    return {
        "specversion": "1.0",
        "id": f.id,
        "source": source,
        "type": f"{type_prefix}.lifecycle.{f.kind}.v1",
        "subject": f.user_id,
        "time": iso_ms(f.at),
        "datacontenttype": "application/json",
        "data": data,
    }


def encode(f: Fired, source: str, type_prefix: str) -> bytes:
    return orjson.dumps(trigger_cloudevent(f, source, type_prefix))
