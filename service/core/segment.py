"""Segment and RudderStack tracking messages mapped onto canonical events.

Real pipelines speak the Segment tracking spec (RudderStack speaks the same one):
`track`, `identify`, `page`, `screen`, `group` and `alias` messages with camelCase
fields. This module turns one such message into the document of a canonical event, or
a reason why it cannot; the canonical validation (`validate_event`) then applies the
same bounds as to any other event. Pure: the receipt time is passed in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

MESSAGE_TYPES = frozenset({"track", "identify", "page", "screen", "group", "alias"})

# Segment's e-commerce and B2B SaaS spec names onto the profiles' canonical types.
DEFAULT_EVENT_MAP: Mapping[str, str] = {
    "Order Completed": "order",
    "Signed Up": "register",
    "Product Viewed": "view",
    "Product List Viewed": "view",
    "Products Searched": "search",
    "Product Added": "add_to_cart",
    "Cart Viewed": "cart",
    "Checkout Started": "checkout",
    "Payment Info Entered": "checkout",
    "Trial Started": "trial_start",
    "Subscription Started": "order",
    "Subscription Renewed": "renew",
    "Subscription Cancelled": "churn",
    "Account Created": "register",
    "Signed In": "login",
}

# Which message types are not `track` events but map to a fixed canonical type.
_FIXED_TYPES: Mapping[str, str] = {
    "page": "visit",
    "screen": "visit",
    "identify": "identify",
    "group": "group",
    "alias": "alias",
}

_AMOUNT_KEYS = ("revenue", "total", "value")
_NOT_TOKEN = re.compile(r"[^a-z0-9_.\-]+")
MAX_CHANNEL_LEN = 64


def normalise_channel(value: Any) -> str | tuple[str] | None:
    """A channel token from a free-text campaign source (`Google Ads` -> `google_ads`);
    None when absent; a one-element tuple holding the reason when it cannot be one."""
    if value is None:
        return None
    if not isinstance(value, str):
        return ("channel (context.campaign.source or properties.channel) must be a string",)
    token = _NOT_TOKEN.sub("_", value.strip().lower()).strip("_")
    if not token or token == "-":
        return (f"channel {value[:40]!r} has no letters or digits to make a channel name from",)
    return token[:MAX_CHANNEL_LEN]


def to_canonical(
    msg: Any, *, received_ms: int, event_map: Mapping[str, str] = DEFAULT_EVENT_MAP
) -> dict[str, Any] | str:
    """The canonical event document for one tracking message, or the reason it has none."""
    if not isinstance(msg, dict):
        return "message is not a JSON object"
    kind = msg.get("type")
    if kind not in MESSAGE_TYPES:
        return f"type must be one of {', '.join(sorted(MESSAGE_TYPES))}"
    message_id = msg.get("messageId")
    if not isinstance(message_id, str) or not message_id:
        return "messageId must be a non-empty string"
    user_id = _id(msg.get("userId")) or _id(msg.get("anonymousId"))
    if user_id is None:
        return "a message needs a userId or an anonymousId"
    properties = msg.get("properties")
    if properties is not None and not isinstance(properties, dict):
        return "properties must be a JSON object"
    props: dict[str, Any] = dict(properties) if properties else {}
    if kind == "track":
        name = msg.get("event")
        if not isinstance(name, str) or not name:
            return "a track message needs an event name"
        etype = event_map.get(name, name)
    else:
        etype = _FIXED_TYPES[kind]
    previous = _previous_id(kind, msg)
    if isinstance(previous, tuple):
        return previous[0]
    if previous is not None:
        props["previous_id"] = previous
    traits = msg.get("traits")
    if kind == "identify" and traits is not None:
        if not isinstance(traits, dict):
            return "traits must be a JSON object"
        props["traits"] = traits
    doc: dict[str, Any] = {
        "event_id": message_id,
        "user_id": user_id,
        "type": etype,
        "ts": _first(msg, ("timestamp", "originalTimestamp")) or received_ms,
    }
    amount = next((props[k] for k in _AMOUNT_KEYS if props.get(k) is not None), None)
    if amount is not None:
        doc["amount"] = amount
    channel = normalise_channel(_campaign_source(msg) or props.get("channel"))
    if isinstance(channel, tuple):
        return channel[0]
    if channel is not None:
        doc["channel"] = channel
    if props:
        doc["properties"] = props
    return doc


def _id(value: Any) -> str | None:
    """Segment ids are strings, but SDKs also send numbers; anything else is no id."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value:
        return value
    return None


def _previous_id(kind: str, msg: dict[str, Any]) -> str | tuple[str] | None:
    """The id an identity is merged from: an alias's previousId, or the anonymous id an
    identify names alongside a user id."""
    if kind == "alias":
        previous = _id(msg.get("previousId"))
        if previous is None or _id(msg.get("userId")) is None:
            return ("an alias message needs both previousId and userId",)
        return previous
    if kind == "identify":
        anonymous, user = _id(msg.get("anonymousId")), _id(msg.get("userId"))
        if anonymous is not None and user is not None and anonymous != user:
            return anonymous
    return None


def _first(msg: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = msg.get(key)
        if value is not None:
            return value
    return None


def _campaign_source(msg: dict[str, Any]) -> Any:
    context = msg.get("context")
    if not isinstance(context, dict):
        return None
    campaign = context.get("campaign")
    return campaign.get("source") if isinstance(campaign, dict) else None


def map_value(
    value: bytes | None, *, received_ms: int, event_map: Mapping[str, str] = DEFAULT_EVENT_MAP
) -> bytes | str:
    """One Kafka message holding one tracking message (what RudderStack's Kafka destination
    writes) as canonical event bytes, or the reason it cannot be one."""
    if not value:
        return "empty message"
    try:
        msg = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return f"not JSON: {exc}"
    doc = to_canonical(msg, received_ms=received_ms, event_map=event_map)
    return doc if isinstance(doc, str) else orjson.dumps(doc)
