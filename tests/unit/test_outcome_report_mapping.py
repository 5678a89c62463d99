"""Delivery reports of messaging vendors, in their documented shapes, onto outcome events:
each mapping rule, what is skipped rather than refused, and the bounds."""

from __future__ import annotations

import hashlib
import hmac
from importlib import resources
from typing import Any

import pytest
import yaml

from service.core.outcome_reports import (
    MAX_REPORTS,
    ReportError,
    mailgun_signature_ok,
    map_reports,
    parse_generic,
)
from service.core.profile import ProfileError, parse_profile

DAILY_APP = resources.files("service").joinpath("profiles", "daily_app.yaml")
NOW = 1_764_950_400_000
TID = "b58b65519892f36c35a17693771f98b5"


def sendgrid(event: str, n: int = 1, **extra: Any) -> dict[str, Any]:
    """One event of SendGrid's Event Webhook; custom_args come back as top-level fields."""
    return {
        "email": "example@test.com",
        "timestamp": 1513299569,
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "event": event,
        "category": "cat facts",
        "sg_event_id": f"sg_event_id_{n}",
        "sg_message_id": "sg_message_id",
        "trigger_id": TID,
        "user_id": "u80",
        **extra,
    }


def test_sendgrid_delivered_and_click_become_outcomes_others_are_skipped() -> None:
    body = [sendgrid("processed", 1), sendgrid("delivered", 2), sendgrid("open", 3), sendgrid("click", 4)]
    mapped = map_reports("sendgrid", body, received_ms=NOW)
    assert mapped.skipped == 2 and mapped.rejected == []
    assert mapped.events == [
        {
            "event_id": "sendgrid:sg_event_id_2",
            "user_id": "u80",
            "type": "message_delivered",
            "ts": 1513299569000,
            "properties": {"trigger_id": TID, "vendor": "sendgrid", "report": "delivered"},
        },
        {
            "event_id": "sendgrid:sg_event_id_4",
            "user_id": "u80",
            "type": "message_click",
            "ts": 1513299569000,
            "properties": {"trigger_id": TID, "vendor": "sendgrid", "report": "click"},
        },
    ]


def test_a_report_without_the_trigger_metadata_is_rejected_with_the_fix_named() -> None:
    body = [sendgrid("delivered", 1, trigger_id=None), sendgrid("click", 2, user_id=""), "x"]
    mapped = map_reports("sendgrid", body, received_ms=NOW)
    assert mapped.events == []
    assert [r["index"] for r in mapped.rejected] == [0, 1, 2]
    assert "trigger_id" in mapped.rejected[0]["reason"]
    assert "user_id" in mapped.rejected[1]["reason"]


def mailgun(event: str, key: bytes = b"key-123") -> dict[str, Any]:
    timestamp, token = "1529006854", "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0"
    signature = hmac.new(key, f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": {
            "event": event,
            "timestamp": 1521472262.908181,
            "id": "CPgfbmQMTCKtHW6uIWtuVe",
            "recipient": "alice@example.com",
            "user-variables": {"trigger_id": TID, "user_id": "u80"},
        },
    }


def test_mailgun_reports_and_their_signature() -> None:
    (event,) = map_reports("mailgun", mailgun("delivered"), received_ms=NOW).events
    assert event["event_id"] == "mailgun:CPgfbmQMTCKtHW6uIWtuVe"
    assert (event["type"], event["ts"], event["user_id"]) == ("message_delivered", 1521472262908, "u80")
    assert map_reports("mailgun", mailgun("opened"), received_ms=NOW).skipped == 1
    assert mailgun_signature_ok(mailgun("clicked"), b"key-123")
    assert not mailgun_signature_ok(mailgun("clicked", key=b"other"), b"key-123")
    assert not mailgun_signature_ok({"event-data": {}}, b"key-123")


def test_generic_mapping_from_the_profile() -> None:
    spec = parse_generic(
        {
            "pushco": {
                "items": "events",
                "type": "kind",
                "id": "id",
                "user_id": "meta.user",
                "trigger_id": "meta.trigger",
                "ts": "at",
                "types": {"push.delivered": "message_delivered", "push.opened": "message_click"},
            }
        },
        "profile",
    )
    body = {
        "events": [
            {"kind": "push.delivered", "id": 7, "at": 1764950000123, "meta": {"user": "u1", "trigger": TID}},
            {"kind": "push.opened", "id": 8, "at": 1764950001, "meta": {"user": "u1", "trigger": TID}},
            {"kind": "push.sent", "id": 9, "meta": {"user": "u1", "trigger": TID}},
        ]
    }
    mapped = map_reports("pushco", body, received_ms=NOW, generic=spec)
    assert [(e["event_id"], e["type"], e["ts"]) for e in mapped.events] == [
        ("pushco:7", "message_delivered", 1764950000123),  # already ms
        ("pushco:8", "message_click", 1764950001000),  # seconds
    ]
    assert mapped.skipped == 1


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ({"sendgrid": {}}, "built in"),
        ({"Bad Name": {}}, "vendor name"),
        ({"x": {"type": "t", "id": "i", "user_id": "u"}}, "x.trigger_id"),
        ({"x": {"type": "t", "id": "i", "user_id": "u", "trigger_id": "a..b", "types": {}}}, "x.trigger_id"),
        (
            {"x": {"type": "t", "id": "i", "user_id": "u", "trigger_id": "t", "types": {"a": "visit"}}},
            "x.types",
        ),
        ({"x": {"type": "t", "surprise": 1}}, "x.surprise"),
    ],
)
def test_a_bad_generic_mapping_names_its_field(section: dict[str, Any], field: str) -> None:
    with pytest.raises(ProfileError, match=field):
        parse_profile({**yaml.safe_load(DAILY_APP.read_text()), "outcome_reports": section})


def test_bounds_unknown_vendor_and_shapes() -> None:
    with pytest.raises(ReportError, match="unknown vendor"):
        map_reports("nobody", [], received_ms=NOW)
    with pytest.raises(ReportError, match="at most"):
        map_reports("sendgrid", [sendgrid("click", i) for i in range(MAX_REPORTS + 1)], received_ms=NOW)
    with pytest.raises(ReportError, match="no reports"):
        map_reports("sendgrid", [], received_ms=NOW)
    with pytest.raises(ReportError):
        map_reports("mailgun", [mailgun("clicked")], received_ms=NOW)
    long_id = sendgrid("click", 1, sg_event_id="x" * 128)
    (event,) = map_reports("sendgrid", [long_id], received_ms=NOW).events
    assert len(event["event_id"]) <= 128
