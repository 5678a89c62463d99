"""Hostile input for the fuzz runs: valid events with nasty ids, and bad messages of every kind.

Deterministic for a seed (`random.Random`), and fast enough to make 100,000+ messages in
a second or two, which hypothesis is not. Every user id, event id and property value a
generator makes carries `MARKER`, so a scan of logs or metrics for it finds any leak.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

MARKER = "ZQX7"  # in every generated id and property value; never in anything the service says itself
T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z
SPAN = 60 * 86_400_000

# Valid user ids (1..128 characters) that would break a naive key scheme, log line or label.
HOSTILE_ID_PARTS = (
    "{0}",
    "}{",
    "{",
    "}",
    "a:b",
    "lc:{3}:users",
    "with space",
    "new\nline",
    "cr\r\nlf",
    "tab\t",
    "ünïcødé",
    "用户",
    "🙂",
    "\u0000nul",
    "\u202eRTL",
    "'; DROP TABLE users; --",
    "${jndi:ldap://x/a}",
    "%s%n%x",
    "<script>alert(1)</script>",
    "../../etc/passwd",
    "\\",
    '"quoted"',
    "*",
    "?",
)
TYPES = ("visit", "register", "verify", "order", "renew", "login", "message_click")
CHANNELS = ("ads", "organic", "referral", "partner.x", "a_b-c")


def hostile_user_id(rng: random.Random, n: int) -> str:
    """A valid user id mixing hostile parts with the marker; unique per `n`."""
    parts = rng.sample(HOSTILE_ID_PARTS, rng.randint(1, 3))
    uid = f"{MARKER}{n}{''.join(parts)}"
    if rng.random() < 0.05:
        uid = (uid + "{" * 128)[:128]  # the longest accepted, all braces
    return uid


def good_event(rng: random.Random, n: int, user_id: str) -> dict[str, Any]:
    """A valid canonical event of `user_id` with event id `n` (unique)."""
    event: dict[str, Any] = {
        "event_id": f"{MARKER}-e{n}-{rng.choice(HOSTILE_ID_PARTS)}"[:128],
        "user_id": user_id,
        "type": rng.choice(TYPES),
        "ts": T0 + rng.randrange(SPAN),
    }
    roll = rng.random()
    if roll < 0.3:
        event["ts"] = _rfc3339(event["ts"])
    if rng.random() < 0.4:  # a few known channels, and a flood of made-up ones
        event["channel"] = rng.choice(CHANNELS) if rng.random() < 0.8 else f"flood-{rng.randrange(300)}"
    if event["type"] in ("order", "renew"):
        event["amount"] = rng.choice((0, 9.99, 120, 1e12, -5.5, 1e-300))
    if rng.random() < 0.3:
        event["properties"] = _properties(rng)
    return event


def _rfc3339(ts: int) -> str:
    return datetime.fromtimestamp(ts / 1000, UTC).isoformat(timespec="milliseconds")


def _properties(rng: random.Random) -> dict[str, Any]:
    nested: Any = f"{MARKER} {rng.choice(HOSTILE_ID_PARTS)}"
    for _ in range(rng.randint(0, 14)):  # within the accepted depth
        nested = {"k": nested} if rng.random() < 0.5 else [nested]
    props: dict[str, Any] = {"note": nested, "big": MARKER * _huge(rng, 1, 2000)}
    if rng.random() < 0.2:
        props["policy_id"] = f"{MARKER}-p{rng.randrange(100)}"
        props["policy_end"] = rng.choice((T0 + SPAN, "2024-02-01T00:00:00Z", "garbage", None, 1e300, [1]))
    if rng.random() < 0.1:
        props["trigger_id"] = rng.choice((MARKER, 42, None, {"x": 1}))
    return props


def bad_event_doc(rng: random.Random, n: int) -> Any:
    """A JSON value that decodes but is not a canonical event (an object or not)."""
    base = good_event(rng, n, hostile_user_id(rng, n))
    kind = rng.randrange(26)
    if kind == 0:
        base["event_id"] = rng.choice((n, None, [], {"a": 1}, True, 1.5))
    elif kind == 1:
        base["user_id"] = rng.choice((n, None, ["u"], {"u": 1}, False))
    elif kind == 2:
        base["user_id"] = ""
    elif kind == 3:
        base["user_id"] = MARKER + "u" * _huge(rng, 129, 200_000)
    elif kind == 4:
        base["event_id"] = MARKER + "e" * _huge(rng, 129, 100_000)
    elif kind == 5:
        # any printable name up to 128 characters is a type ("Order Completed"): these are not
        base["type"] = rng.choice(("", "a" * 129, 7, None, "t\n", "tab\there", "del\x7f", "nul\x00"))
    elif kind == 6:
        base["ts"] = rng.choice(
            (-1, 0, 946_684_799_999, 4_102_444_800_001, 10**15, 1e20, -1e300, 1e300)
        )  # before 2000, after 2100, absurd
    elif kind == 7:
        base["ts"] = rng.choice(("1900-01-01T00:00:00Z", "3000-01-01T00:00:00Z", "9999-12-31T23:59:59+00:00"))
    elif kind == 8:
        base["ts"] = rng.choice(("yesterday", "2024-01-01", "2024-01-01T00:00:00", "", "1" * 41, MARKER))
    elif kind == 9:
        base["ts"] = rng.choice((True, None, [T0], {"ms": T0}))
    elif kind == 10:
        base.pop(rng.choice(("event_id", "user_id", "type", "ts")))
    elif kind == 11:
        base["amount"] = rng.choice(("9.99", True, [1], {"v": 1}, 1e13, -1e13, 1.7976931348623157e308))
    elif kind == 12:
        base["properties"] = rng.choice(([1, 2], "p", 3, True))
    elif kind == 13:
        deep: Any = MARKER
        for _ in range(rng.choice((17, 100, 300, 600))):
            deep = [deep] if rng.random() < 0.5 else {"d": deep}
        base["properties"] = {"deep": deep}
    elif kind == 14:
        base["channel"] = rng.choice(("-", "", "with space", "ch:1", "{0}", 5, "c" * 65, None))
        if base["channel"] is None:
            base["channel"] = ["list"]
    elif kind == 15:
        base[rng.choice(("extra", "User_Id", "", MARKER, "ts "))] = 1
    elif kind == 16:
        return rng.choice((42, -1.5, "a string", None, True, False, [], {}))  # a list is an envelope
    elif kind == 17:
        return {}
    elif kind == 18:
        base["ts"] = T0 + 0.5 if rng.random() < 0.5 else float("nan")  # NaN is not JSON: dumped below
    elif kind == 19:
        base["amount"] = float(rng.choice(("nan", "inf", "-inf")))
    elif kind == 20:
        base["ts"] = float(rng.choice(("nan", "inf", "-inf")))
    elif kind == 21:
        base["type"] = "t" * _huge(rng, 129, 300_000)  # a huge string where a short name belongs
    elif kind == 22:
        base["properties"] = {MARKER: "x" * 10}  # fine properties, but the user id is empty
        base["user_id"] = ""
    elif kind == 23:
        base["ts"] = "2024-13-45T25:61:61Z"
    elif kind == 24:
        base["amount"] = None  # null means "absent", which is valid ...
        base["type"] = ""  # ... so this one is bad by its type
    else:
        base["event_id"] = ""
    if kind == 18 and base["ts"] == T0 + 0.5:
        base["ts"] = "not a time"
    return base


def _huge(rng: random.Random, small: int, huge: int) -> int:
    """A length just over a limit, and now and then far over it (kept rare: the run's volume)."""
    return huge if rng.random() < 0.01 else rng.choice((small, small * 10))


def dumps_lenient(doc: Any) -> bytes:
    """JSON bytes of `doc`, writing NaN and infinities the way JavaScript's JSON.stringify
    never would but hostile producers do (`NaN`, `Infinity`)."""
    return json.dumps(doc, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")


RAW_BAD = (
    b"",
    b" ",
    b"{",
    b"}",
    b"[",
    b"null",
    b"true",
    b"42",
    b'"a string"',
    b"[]",
    b"NaN",
    b"Infinity",
    b"\xff\xfe\x00",
    b'{"event_id": "\xff\xfe", "user_id": "u", "type": "visit", "ts": 1700000000000}',
    b'{"event_id": "e", "user_id": "\\ud800", "type": "visit", "ts": 1700000000000}',
    b'{"event_id": "e", "user_id": "u", "type": "visit", "ts": 1700000000000',
    b'{"event_id": "e", "user_id": "u", "type": "visit", "ts": 1700000000000, "amount": 1e400}',
    b'{"event_id": "e", "user_id": "u", "type": "visit", "ts": 1700000000000}garbage',
    b"[" * 2000 + b"]" * 2000,
    b'{"a":' * 1500 + b"1" + b"}" * 1500,
    b"\x00\x01\x02",
    b"<?xml version='1.0'?><event/>",
    b"event_id=e&user_id=u",
)


def raw_bad_message(rng: random.Random, n: int) -> bytes:
    """A message value that is bad as a whole: not JSON, not an object or array, or an empty array."""
    if rng.random() < 0.5:
        return rng.choice(RAW_BAD)
    return dumps_lenient(bad_event_doc(rng, n))


def envelope_item(rng: random.Random, n: int) -> bytes:
    """A bad event that is valid JSON (so the envelope around it stays JSON): dead-lettered alone."""
    while True:
        value = dumps_lenient(bad_event_doc(rng, n))
        try:
            orjson.loads(value)
        except orjson.JSONDecodeError:
            continue
        return value


@dataclass
class Mix:
    """A generated run in publication order, the good events among them in that order (the
    reference's "first channel seen" is arrival order), and how many dead letters must
    come out: one per bad single message, one per bad item of an envelope."""

    messages: list[tuple[bytes | None, int, bytes]] = field(default_factory=list)  # key, partition, value
    good: list[dict[str, Any]] = field(default_factory=list)
    bad: int = 0
    envelopes: int = 0
    hostile_ids: list[str] = field(default_factory=list)


def mix(seed: int, messages: int, users: int, partitions: int) -> Mix:
    """`messages` messages: ~45% single good events, ~30% single bad ones and ~25%
    envelopes of 1..40 items of one partition (~15% of the items bad)."""
    from service.core.partitioning import partition_for

    rng = random.Random(seed)
    ids = [hostile_user_id(rng, i) for i in range(users)]
    owner = {uid: partition_for(uid, partitions) for uid in ids}
    by_partition: dict[int, list[str]] = {}
    for uid in ids:
        by_partition.setdefault(owner[uid], []).append(uid)
    out = Mix(hostile_ids=ids)
    n = 0
    for _ in range(messages):
        n += 1
        roll = rng.random()
        if roll < 0.45:
            event = good_event(rng, n, rng.choice(ids))
            out.good.append(event)
            uid = event["user_id"]
            out.messages.append((uid.encode(), owner[uid], orjson.dumps(event)))
        elif roll < 0.75:
            key = rng.choice((None, rng.choice(ids).encode(), b"\xff\x00", b"{1}"))
            out.messages.append((key, rng.randrange(partitions), raw_bad_message(rng, n)))
            out.bad += 1
        else:
            partition = rng.choice(sorted(by_partition))
            owners = by_partition[partition]
            items: list[bytes] = []
            for _ in range(rng.randint(1, 40)):
                n += 1
                if rng.random() < 0.15:
                    items.append(envelope_item(rng, n))
                    out.bad += 1
                else:
                    event = good_event(rng, n, rng.choice(owners))
                    out.good.append(event)
                    items.append(orjson.dumps(event))
            out.messages.append((owners[0].encode(), partition, b"[" + b",".join(items) + b"]"))
            out.envelopes += 1
    return out
