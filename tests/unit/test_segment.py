"""The mapping of Segment/RudderStack tracking messages onto canonical events, rule by rule."""

from __future__ import annotations

from typing import Any

from service.core.events import Event, validate_event
from service.core.segment import normalise_channel, to_canonical

RECEIVED = 1_764_900_000_000


def _track(**fields: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": "track", "messageId": "m-1", "userId": "u-1", "event": "Order Completed"}
    msg.update(fields)
    return msg


def _map(msg: dict[str, Any]) -> dict[str, Any]:
    doc = to_canonical(msg, received_ms=RECEIVED)
    assert isinstance(doc, dict), doc
    assert isinstance(validate_event(doc), Event)
    return doc


def test_message_id_becomes_event_id() -> None:
    assert _map(_track(messageId="abc-123"))["event_id"] == "abc-123"


def test_user_id_is_preferred_to_anonymous_id() -> None:
    assert _map(_track(userId="u-9", anonymousId="a-9"))["user_id"] == "u-9"


def test_anonymous_id_stands_in_when_there_is_no_user_id() -> None:
    msg = _track(anonymousId="a-9")
    del msg["userId"]
    assert _map(msg)["user_id"] == "a-9"


def test_a_message_without_any_id_is_rejected() -> None:
    msg = _track()
    del msg["userId"]
    assert to_canonical(msg, received_ms=RECEIVED) == "a message needs a userId or an anonymousId"


def test_timestamp_then_original_timestamp_then_receipt_time() -> None:
    both = _track(timestamp="2025-01-02T03:04:05.000Z", originalTimestamp="2024-01-01T00:00:00Z")
    assert _map(both)["ts"] == "2025-01-02T03:04:05.000Z"
    assert _map(_track(originalTimestamp="2024-01-01T00:00:00Z"))["ts"] == "2024-01-01T00:00:00Z"
    assert _map(_track())["ts"] == RECEIVED


def test_revenue_then_total_then_value_become_amount() -> None:
    assert _map(_track(properties={"revenue": 5, "total": 7, "value": 9}))["amount"] == 5
    assert _map(_track(properties={"total": 7, "value": 9}))["amount"] == 7
    assert _map(_track(properties={"value": 9}))["amount"] == 9
    assert "amount" not in _map(_track(properties={"sku": "x"}))


def test_campaign_source_then_properties_channel_become_channel() -> None:
    msg = _track(context={"campaign": {"source": "Google Ads"}}, properties={"channel": "email"})
    assert _map(msg)["channel"] == "google_ads"
    assert _map(_track(properties={"channel": "Email"}))["channel"] == "email"
    assert "channel" not in _map(_track())


def test_a_channel_that_cannot_be_a_token_is_rejected_with_a_reason() -> None:
    reason = to_canonical(_track(properties={"channel": "!!!"}), received_ms=RECEIVED)
    assert isinstance(reason, str) and "channel" in reason
    assert isinstance(normalise_channel(3), tuple)
    assert normalise_channel("x" * 100) == "x" * 64


def test_spec_event_names_map_to_canonical_types() -> None:
    assert _map(_track(event="Order Completed"))["type"] == "order"
    assert _map(_track(event="Signed Up"))["type"] == "register"
    assert _map(_track(event="Product Viewed"))["type"] == "view"


def test_a_profile_event_map_overrides_the_defaults() -> None:
    doc = to_canonical(_track(event="Bought"), received_ms=RECEIVED, event_map={"Bought": "order"})
    assert isinstance(doc, dict) and doc["type"] == "order"


def test_an_unmapped_event_name_is_kept_as_its_own_type() -> None:
    assert _map(_track(event="video_played"))["type"] == "video_played"


def test_page_and_screen_are_visits() -> None:
    for kind in ("page", "screen"):
        assert _map({"type": kind, "messageId": "m", "userId": "u", "name": "Home"})["type"] == "visit"


def test_identify_keeps_traits_and_names_the_anonymous_id_it_merges() -> None:
    msg = {"type": "identify", "messageId": "m", "userId": "u", "anonymousId": "a", "traits": {"plan": "pro"}}
    doc = _map(msg)
    assert doc["type"] == "identify"
    assert doc["user_id"] == "u"
    assert doc["properties"] == {"previous_id": "a", "traits": {"plan": "pro"}}


def test_alias_carries_the_previous_id() -> None:
    doc = _map({"type": "alias", "messageId": "m", "userId": "u", "previousId": "a"})
    assert (doc["type"], doc["user_id"], doc["properties"]) == ("alias", "u", {"previous_id": "a"})
    missing = to_canonical({"type": "alias", "messageId": "m", "userId": "u"}, received_ms=RECEIVED)
    assert missing == "an alias message needs both previousId and userId"


def test_unknown_message_types_and_non_objects_are_rejected() -> None:
    assert isinstance(to_canonical({"type": "nope", "messageId": "m", "userId": "u"}, received_ms=0), str)
    assert to_canonical([1], received_ms=0) == "message is not a JSON object"


def test_a_kafka_value_maps_to_canonical_bytes_or_a_reason() -> None:
    import orjson

    from service.core.segment import map_value

    mapped = map_value(orjson.dumps(_track()), received_ms=RECEIVED)
    assert isinstance(mapped, bytes) and orjson.loads(mapped)["type"] == "order"
    assert map_value(b"{nope", received_ms=RECEIVED).startswith("not JSON")  # type: ignore[union-attr]
    assert map_value(None, received_ms=RECEIVED) == "empty message"


def test_an_unmapped_spec_name_is_a_valid_event_type_as_it_is() -> None:
    doc = to_canonical(_track(event="Video Playback Started"), received_ms=RECEIVED)
    assert isinstance(doc, dict)
    checked = validate_event(doc)
    assert isinstance(checked, Event) and checked.type == "Video Playback Started"
    assert isinstance(validate_event({**doc, "type": "x" * 129}), str)
    assert isinstance(validate_event({**doc, "type": "tab\there"}), str)
