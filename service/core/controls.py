"""Control messages: what the service itself writes to the events topic, beside events.

Some changes must be applied by the worker that owns a user, in order with that user's
events and inside its fenced commit: erasing a user, lifting an erasure, and the two
halves of an identity merge. They travel as control messages keyed by the user id, e.g.
`{"control": "erase", "user_id": ..., "request_id": ..., "ts": ...}`, and are decoded into
`Event`s of reserved types that no event producer can send (`validate_event` refuses
them), so only the service's own API, CLI and workers write them.

- `erase` / `restore`: service.core.erasure;
- `merge_out` (to the anonymous id's owner; `into`: the known id) and `merge_in` (to the
  known id's owner; `from`, the anonymous id's packed `record` or null, `hops`):
  service.core.identity.

`ts` is when it was asked (epoch ms); it moves no clock. The event id is
`<control>:<request_id>`, so a redelivered control message is applied once.
"""

from __future__ import annotations

from typing import Any

import orjson

from service.core.events import MAX_ID_LEN, RESERVED_TYPE_PREFIX, Event

ERASE = RESERVED_TYPE_PREFIX + "erase"
RESTORE = RESERVED_TYPE_PREFIX + "restore"
MERGE_OUT = RESERVED_TYPE_PREFIX + "merge_out"
MERGE_IN = RESERVED_TYPE_PREFIX + "merge_in"
_KINDS = {"erase": ERASE, "restore": RESTORE, "merge_out": MERGE_OUT, "merge_in": MERGE_IN}
_NAMES = {v: k for k, v in _KINDS.items()}
CONTROL_TYPES = frozenset(_KINDS.values())
_BASE_FIELDS = frozenset({"control", "user_id", "request_id", "ts"})
# what each kind carries beyond the base fields (kept in the event's properties)
_EXTRA = {"erase": (), "restore": (), "merge_out": ("into",), "merge_in": ("from", "record", "hops")}
MAX_HOPS = 8  # a merge forwarded along merged ids further than this is a cycle


def control_message(kind: str, user_id: str, request_id: str, ts: int, **extra: Any) -> bytes:
    """The message value of control `kind` for the owner of `user_id`."""
    if kind not in _KINDS:
        raise ValueError(f"control kind {kind!r} is not one of {', '.join(_KINDS)}")
    if set(extra) != set(_EXTRA[kind]):
        raise ValueError(f"control {kind!r} carries {', '.join(_EXTRA[kind]) or 'nothing more'}")
    return orjson.dumps({"control": kind, "user_id": user_id, "request_id": request_id, "ts": ts, **extra})


def control_event(doc: dict[str, Any]) -> Event | str:
    """The control message `doc` as an event of a reserved type, or why it is not one."""
    name = doc.get("control")
    kind = _KINDS.get(name) if isinstance(name, str) else None
    if kind is None:
        return f"control message: control must be one of {', '.join(_KINDS)}"
    assert isinstance(name, str)
    extra = doc.keys() - _BASE_FIELDS - set(_EXTRA[name])
    if extra:
        return f"control message: unknown field(s): {', '.join(sorted(str(k)[:40] for k in extra)[:5])}"
    user_id, request_id, ts = doc.get("user_id"), doc.get("request_id"), doc.get("ts")
    for field, value in (("user_id", user_id), ("request_id", request_id)):
        if not _is_id(value):
            return f"control message: {field} must be a string of 1..{MAX_ID_LEN} characters"
    if isinstance(ts, bool) or not isinstance(ts, int) or not 0 <= ts < 1 << 53:
        return "control message: ts must be epoch milliseconds"
    problem = _extra_problem(name, doc)
    if problem:
        return f"control message: {problem}"
    assert isinstance(user_id, str) and isinstance(request_id, str)
    properties = {k: doc[k] for k in _EXTRA[name]} or None
    return Event(f"{name}:{request_id}", user_id, kind, ts, properties=properties)


def as_control_json(ev: Event) -> dict[str, Any]:
    """A control event back in its message form (to re-route it to its owner)."""
    return {
        "control": _NAMES[ev.type],
        "user_id": ev.user_id,
        "request_id": ev.event_id.split(":", 1)[1],
        "ts": ev.ts,
        **(ev.properties or {}),
    }


def _is_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LEN


def _extra_problem(name: str, doc: dict[str, Any]) -> str | None:
    if name == "merge_out" and not _is_id(doc.get("into")):
        return f"into must be a string of 1..{MAX_ID_LEN} characters"
    if name == "merge_in":
        if not _is_id(doc.get("from")):
            return f"from must be a string of 1..{MAX_ID_LEN} characters"
        hops = doc.get("hops")
        if isinstance(hops, bool) or not isinstance(hops, int) or not 0 <= hops <= MAX_HOPS:
            return f"hops must be an integer of 0..{MAX_HOPS}"
        record = doc.get("record")
        if record is not None and (not isinstance(record, list) or len(record) < 9):
            return "record must be a packed user record (a JSON array) or null"
    return None
