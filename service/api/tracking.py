"""The Segment/RudderStack HTTP tracking API's requests: write keys and message batches.

Browser and server SDKs post `/v1/batch` (`{"batch": [...]}`) or one message to
`/v1/track`, `/v1/identify`, ... The write key comes as the HTTP Basic user name or as
`writeKey` in the body. Each message is mapped onto a canonical event and validated with
the worker's own rules; a bad one is listed with its reason and never holds back the rest.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from service.api.collector import CollectorError, Rejection, sort_events
from service.core.events import TimeBounds
from service.core.segment import DEFAULT_EVENT_MAP, to_canonical

MAX_WRITE_KEY_LEN = 256


def basic_user(authorization: str) -> str | None:
    """The user name of an HTTP Basic `Authorization` header (SDKs send `<writeKey>:`)."""
    if authorization[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(authorization[6:].strip()[: 4 * MAX_WRITE_KEY_LEN], validate=True)
    except (binascii.Error, ValueError):
        return None
    return decoded.decode("utf-8", "replace").split(":", 1)[0]


def key_matches(given: str | None, keys: Sequence[bytes]) -> bool:
    """Whether `given` is one of `keys`, each compared in constant time."""
    if not given or len(given) > MAX_WRITE_KEY_LEN:
        return False
    raw = given.encode()
    return any(hmac.compare_digest(raw, key) for key in keys)


def parse_tracking(body: bytes, kind: str | None) -> tuple[list[Any], Any]:
    """The messages of a tracking request and the body's `writeKey`; `kind` is the message
    type a single-message endpoint implies (None for `/v1/batch`)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise CollectorError(400, f"body is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise CollectorError(400, "body must be a JSON object")
    if kind is None:
        batch = doc.get("batch")
        if not isinstance(batch, list):
            raise CollectorError(400, "a batch body needs `batch`, an array of messages")
        return batch, doc.get("writeKey")
    message = dict(doc)
    message.setdefault("type", kind)
    if message["type"] != kind:
        raise CollectorError(400, f"this endpoint takes {kind} messages")
    return [message], doc.get("writeKey")


def map_messages(
    messages: list[Any],
    *,
    received_ms: int,
    bounds: TimeBounds,
    max_events: int,
    event_map: Mapping[str, str] = DEFAULT_EVENT_MAP,
) -> tuple[list[tuple[str, bytes]], list[dict[str, Any]]]:
    """Valid events as `(user_id, JSON bytes)` and the rejected messages as `{index, reason}`."""
    if not messages:
        raise CollectorError(400, "no messages in the body")
    if len(messages) > max_events:
        raise CollectorError(413, f"{len(messages)} messages in one request; at most {max_events}")
    docs = [to_canonical(message, received_ms=received_ms, event_map=event_map) for message in messages]
    return sort_events([Rejection(d) if isinstance(d, str) else d for d in docs], bounds, keep_bytes=False)
