"""The published JSON Schemas and AsyncAPI document agree with the code.

Events the decoder accepts validate against `schemas/event.schema.json` and events it
rejects do not; CloudEvents rendered by `service.core.cloudevents` for every trigger
kind validate against `schemas/trigger.schema.json`; the AsyncAPI document's schema
references point at files that exist.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

from service.core.audience_events import audience_cloudevent, audience_event_id
from service.core.cloudevents import trigger_cloudevent
from service.core.events import decode_message, validate_event
from service.core.triggers import Fired

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = {p.name: json.loads(p.read_text()) for p in (ROOT / "schemas").glob("*.schema.json")}
REGISTRY: Registry = Registry().with_resources(
    (name, Resource.from_contents(doc)) for name, doc in SCHEMAS.items()
)
T0 = 1_700_000_000_000


def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(SCHEMAS[name], registry=REGISTRY, format_checker=FormatChecker())


def test_every_schema_is_a_valid_draft_2020_12_schema() -> None:
    assert {
        "event.schema.json",
        "envelope.schema.json",
        "trigger.schema.json",
        "audience.schema.json",
    } <= set(SCHEMAS)
    for doc in SCHEMAS.values():
        Draft202012Validator.check_schema(doc)


GOOD_EVENTS: list[dict[str, Any]] = [
    {"event_id": "e1", "user_id": "u1", "type": "visit", "ts": T0},
    {"event_id": "e2", "user_id": "u1", "type": "order", "ts": "2023-11-14T22:13:20+08:00", "amount": 12.5},
    {"event_id": "e3", "user_id": "ü 1", "type": "register", "ts": T0, "channel": "ads"},
    {
        "event_id": "e4",
        "user_id": "u",
        "type": "renew",
        "ts": T0,
        "properties": {"policy_id": "P", "policy_end": T0},
    },
    {"event_id": "e5", "user_id": "u", "type": "message_click", "ts": T0, "properties": {"trigger_id": "ab"}},
]
BAD_EVENTS: list[dict[str, Any]] = [
    {"event_id": "e1", "type": "visit", "ts": T0},  # no user
    {"event_id": "e1", "user_id": "u", "type": "visit", "ts": T0, "extra": 1},
    {"event_id": "e1", "user_id": "u", "type": "visit", "ts": T0, "channel": "-"},
    {"event_id": "e1", "user_id": "u", "type": "a\nvisit", "ts": T0},
    {"event_id": "", "user_id": "u", "type": "visit", "ts": T0},
    {"event_id": "e1", "user_id": "u" * 129, "type": "visit", "ts": T0},
    {"event_id": "e1", "user_id": "u", "type": "visit", "ts": "yesterday"},
    {"event_id": "e1", "user_id": "u", "type": "visit", "ts": 5},
    {"event_id": "e1", "user_id": "u", "type": "order", "ts": T0, "amount": "12"},
    {"event_id": "e1", "user_id": "u", "type": "visit", "ts": T0, "properties": []},
]


@pytest.mark.parametrize("event", GOOD_EVENTS)
def test_events_the_decoder_accepts_match_the_schema(event: dict[str, Any]) -> None:
    assert not isinstance(validate_event(event), str)
    validator("event.schema.json").validate(event)


@pytest.mark.parametrize("event", BAD_EVENTS)
def test_events_the_decoder_rejects_fail_the_schema(event: dict[str, Any]) -> None:
    assert isinstance(validate_event(event), str)
    assert not validator("event.schema.json").is_valid(event)


def test_envelopes() -> None:
    v = validator("envelope.schema.json")
    assert v.is_valid(GOOD_EVENTS)
    assert not v.is_valid([])
    events, rejected = decode_message(b"[]")
    assert not events and rejected
    assert not v.is_valid([GOOD_EVENTS[0], BAD_EVENTS[0]])


def fired(kind: str, data: dict[str, Any], holdout: bool = False) -> Fired:
    return Fired("0123456789abcdef" * 2, kind, "u1", "ads", T0, T0, "tier_1", holdout, False, data)


KINDS = {
    "recall": {"state": "silent", "recall": "transaction"},
    "renewal": {"policy_id": "p1", "policy_end": T0, "days_before": 7},
    "expiry": {"policy_id": "p1", "policy_end": T0},
    "onboarding": {"after": "register"},
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_trigger_cloudevents_match_the_schema(kind: str) -> None:
    v = validator("trigger.schema.json")
    event = trigger_cloudevent(fired(kind, KINDS[kind]), "/lifecycle", "dev.userops")
    v.validate(event)
    broken = {**event, "data": {k: val for k, val in event["data"].items() if k != "holdout"}}
    assert not v.is_valid(broken)


def test_a_trigger_missing_its_kinds_fields_fails() -> None:
    v = validator("trigger.schema.json")
    event = trigger_cloudevent(
        fired("renewal", {"policy_id": "p1", "policy_end": T0, "days_before": 7}), "/x", "p"
    )
    del event["data"]["days_before"]
    assert not v.is_valid(event)
    assert not v.is_valid(
        {**trigger_cloudevent(fired("onboarding", {"after": "r"}), "/x", "p"), "specversion": "0.3"}
    )


def test_audience_cloudevents_match_the_schema() -> None:
    row = {
        "user_id": "u-1",
        "state": "silent",
        "channel": None,
        "stage": "register",
        "segment": "general_recall",
        "last_active": "2026-11-20T08:00:00.000Z",
        "entered_at": "2026-11-23T08:00:00.000Z",
    }
    doc = orjson.loads(
        audience_cloudevent(
            row, "silent_this_week", "c-1", "2026-11-23T09:00:00.000Z", "/lifecycle", "dev.userops"
        )
    )
    validator("audience.schema.json").validate(doc)
    assert doc["id"] == audience_event_id("silent_this_week", "c-1", "u-1")
    assert doc["id"] != audience_event_id("silent_this_week", "c-2", "u-1"), "another campaign, other ids"
    doc["data"]["state"] = "asleep"
    assert not validator("audience.schema.json").is_valid(doc)


def test_the_asyncapi_document_describes_the_topics_and_its_references_exist() -> None:
    doc = yaml.safe_load((ROOT / "docs/asyncapi.yaml").read_text())
    assert doc["asyncapi"] == "3.0.0"
    addresses = {c["address"] for c in doc["channels"].values()}
    assert addresses == {"user-events", "user-events.dlq", "lifecycle-triggers", "lifecycle-audiences"}
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref" and isinstance(value, str) and not value.startswith("#"):
                    refs.append(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(doc)
    assert len(refs) == 5
    for ref in refs:
        assert (ROOT / "docs" / ref).resolve().is_file(), ref
    for op in doc["operations"].values():
        assert op["channel"]["$ref"].removeprefix("#/channels/") in doc["channels"]


def test_control_messages_the_worker_reads_match_their_schema() -> None:
    from service.core.controls import ERASE, control_event, control_message

    messages = [control_message(kind, "u/1", "req", T0) for kind in ("erase", "restore")]
    messages.append(control_message("merge_out", "anon", "req", T0, into="u/1"))
    record = [T0, T0, T0, "-", 0, 0, 0, {}, 0, 1]
    for packed in (record, None):
        messages.append(
            control_message("merge_in", "u/1", "req", T0, **{"from": "anon", "record": packed, "hops": 0})
        )
    for value in messages:
        doc = orjson.loads(value)
        validator("control.schema.json").validate(doc)
        assert not isinstance(control_event(doc), str)
    for bad in (
        {"control": "erase", "user_id": "u", "request_id": "r", "ts": T0, "x": 1},
        {"control": "erase", "user_id": "u", "request_id": "r", "ts": T0, "into": "k"},
        {"control": "merge_out", "user_id": "u", "request_id": "r", "ts": T0},
        {
            "control": "merge_in",
            "user_id": "u",
            "request_id": "r",
            "ts": T0,
            "from": "a",
            "record": [1],
            "hops": 0,
        },
        {
            "control": "merge_in",
            "user_id": "u",
            "request_id": "r",
            "ts": T0,
            "from": "a",
            "record": None,
            "hops": 9,
        },
    ):
        assert isinstance(control_event(bad), str), bad
        assert not validator("control.schema.json").is_valid(bad), bad
    reserved = {"event_id": "e", "user_id": "u", "type": ERASE, "ts": T0}
    assert isinstance(validate_event(reserved), str)
    assert not validator("event.schema.json").is_valid(reserved)
