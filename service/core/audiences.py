"""Audiences as ranges of the per-partition indexes, and the exact rule every user is checked by.

Under fixed thresholds a lifecycle state (`service.core.lifecycle`) is a range of
`last_active` at the clock, an entered-state window is one more range of it (silent
users entered at `last_active + silent_after`), and RFM recency is a range of it too.
So a filter becomes a few `last_active` intervals, walked on `la:{channel}` (or `rfm:{class}`, scored by
`last_active` as well), and every candidate is then checked by `matches`, the
definition; the intervals only have to contain every match. Counting is exact from
range counts (`count_terms`) whenever the filter needs no per-user field; otherwise the
caller walks the candidates.

Walks go in descending (score, member) order with a cursor at the last user examined:
`last_active` only grows, so a user who becomes active again moves *behind* the cursor
and is never returned twice.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from service.core.audience_filters import AudienceFilter, AudienceFilterError
from service.core.instants import iso_ms
from service.core.lifecycle import (
    INACTIVE,
    State,
    Thresholds,
    classifier,
    entered_at,
    entered_offset,
    last_active_range,
    new_since,
    state_at,
)
from service.core.profile import Profile
from service.core.records import NO_CHANNEL, UserRecord
from service.core.segments import RFM_SEGMENTS, SEGMENT_KEYS
from service.core.value import rfm_class

NEG_INF = -(2**62)
POS_INF = 2**62
Interval = tuple[int, int]  # inclusive [lo, hi] of last_active (or first_seen), epoch ms


def segment_of(rec: UserRecord, now: int, profile: Profile) -> str:
    recent = 1 if now - rec.last_active < profile.rfm.recency else 0
    return RFM_SEGMENTS[(recent, rfm_class(rec, profile.rfm))]


def matches(f: AudienceFilter, rec: UserRecord, now: int, profile: Profile) -> bool:
    """The definition of membership: what every walked candidate is checked against."""
    th = profile.thresholds
    state = state_at(rec.first_seen, rec.last_active, now, th)
    if f.states and state.value not in f.states:
        return False
    if f.channel is not None and rec.channel != f.channel:
        return False
    if f.stage is not None and rec.stage < f.stage:
        return False
    if f.not_stage is not None and rec.stage >= f.not_stage:
        return False
    if f.segment is not None and segment_of(rec, now, profile) != f.segment:
        return False
    if f.entered_since is not None or f.entered_before is not None:
        at = entered_at(rec.first_seen, rec.last_active, state, th)
        if f.entered_since is not None and at < f.entered_since.resolve(now, profile.calendar):
            return False
        if f.entered_before is not None and at >= f.entered_before.resolve(now, profile.calendar):
            return False
    return True


AudienceRow = dict[str, Any]


def row_maker(
    f: AudienceFilter, now: int, profile: Profile, stage_names: Sequence[str]
) -> Callable[[str, list[Any]], AudienceRow | None]:
    """`matches` and the user's row in one pass over a packed record's fields (`UserRecord.pack`
    order), with the filter's bounds worked out once: an export's per-user cost. Tested to
    agree with `matches`, `state_at`, `segment_of` and `entered_at`."""
    classify = classifier(now, profile.thresholds)
    recency_edge = now - profile.rfm.recency
    frequency, monetary = profile.rfm.frequency, profile.rfm.monetary
    states = f.states or None
    channel, reached, not_reached, segment = f.channel, f.stage, f.not_stage, f.segment
    since, before = _entered_bounds(f, now, profile)
    names = list(stage_names)

    def row(uid: str, fields: list[Any]) -> AudienceRow | None:
        last_active = fields[1]
        state, entered = classify(fields[0], last_active)
        if states is not None and state not in states:
            return None
        ch = fields[3]
        if channel is not None and ch != channel:
            return None
        stage = fields[4]
        if (reached is not None and stage < reached) or (not_reached is not None and stage >= not_reached):
            return None
        fm_class = (2 if fields[5] >= frequency else 0) | (1 if fields[6] >= monetary else 0)
        seg = RFM_SEGMENTS[(1 if last_active > recency_edge else 0, fm_class)]
        if segment is not None and seg != segment:
            return None
        if (since is not None and entered < since) or (before is not None and entered >= before):
            return None
        return {
            "user_id": uid,
            "state": state,
            "channel": None if ch == NO_CHANNEL else ch,
            "stage": names[stage] if stage >= 0 else None,
            "segment": seg,
            "last_active": iso_ms(last_active),
            "entered_at": iso_ms(entered),
        }

    return row


def state_interval(state: State, now: int, th: Thresholds) -> Interval:
    """`last_active` of users in `state` at `now` (new and retained share theirs)."""
    lo, hi = last_active_range(state, now, th)
    return (NEG_INF if lo is None else lo, POS_INF if hi is None else hi)


def _entered_bounds(f: AudienceFilter, now: int, profile: Profile) -> tuple[int | None, int | None]:
    """`entered_since` and `entered_before` at the clock (a day: its local midnight), or None."""
    cal = profile.calendar
    since = f.entered_since.resolve(now, cal) if f.entered_since is not None else None
    before = f.entered_before.resolve(now, cal) if f.entered_before is not None else None
    return since, before


def _entered_window(f: AudienceFilter, now: int, profile: Profile) -> Interval:
    since, before = _entered_bounds(f, now, profile)
    return (NEG_INF if since is None else since, POS_INF if before is None else before - 1)


def _entered_la(state: State, window: Interval, th: Thresholds) -> Interval:
    """`last_active` that can give an `entered_at` inside `window` (exact for idle states; for
    new and retained a bound, since `last_active >= first_seen`)."""
    lo, hi = window
    shift = entered_offset(state, th)
    return (_sub(lo, shift), _sub(hi, shift) if state in INACTIVE else POS_INF)


def _sub(x: int, d: int) -> int:
    return x if x in (NEG_INF, POS_INF) else x - d


def _recency(f: AudienceFilter, now: int, profile: Profile) -> Interval:
    if f.segment is None:
        return (NEG_INF, POS_INF)
    recent, _ = SEGMENT_KEYS[f.segment]
    edge = now - profile.rfm.recency
    return (edge + 1, POS_INF) if recent else (NEG_INF, edge)


def _meet(*intervals: Interval) -> Interval | None:
    lo = max(i[0] for i in intervals)
    hi = min(i[1] for i in intervals)
    return (lo, hi) if lo <= hi else None


def _chosen_states(f: AudienceFilter) -> list[State]:
    return [s for s in State if not f.states or s.value in f.states]


def la_intervals(f: AudienceFilter, now: int, profile: Profile) -> list[Interval]:
    """Disjoint `last_active` intervals, highest first, that hold every user matching `f`."""
    th = profile.thresholds
    window = _entered_window(f, now, profile)
    recency = _recency(f, now, profile)
    found = []
    for state in _chosen_states(f):
        got = _meet(state_interval(state, now, th), _entered_la(state, window, th), recency)
        if got is not None:
            found.append(got)
    found.sort()
    merged: list[Interval] = []
    for lo, hi in found:
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged[::-1]


def walk_index(f: AudienceFilter) -> tuple[str, int]:
    """Which index to walk: `("la", 0)` (the filter's channel, or every channel) or
    `("rfm", class)` when a segment of class 1..3 narrows the users more than all channels do."""
    if f.channel is None and f.segment is not None and SEGMENT_KEYS[f.segment][1] > 0:
        return ("rfm", SEGMENT_KEYS[f.segment][1])
    return ("la", 0)


@dataclass(frozen=True, slots=True)
class Term:
    """`sign` × the users of index `index` (`la`/`fs` per channel, or `rfm` class `fm_class`)
    whose score is in `[lo, hi]`: one ZCOUNT per partition (and channel)."""

    sign: int
    index: str
    lo: int
    hi: int
    fm_class: int = 0


def count_terms(f: AudienceFilter, now: int, profile: Profile) -> list[Term] | None:
    """Range counts whose signed sum is exactly the audience's size, or None when some filter
    needs the users' records (funnel stages; a segment with a channel, or with new/retained;
    retained with an entered window)."""
    if f.stage is not None or f.not_stage is not None:
        return None
    if f.segment is not None and f.channel is not None:
        return None
    th = profile.thresholds
    window = _entered_window(f, now, profile)
    recency = _recency(f, now, profile)
    terms: list[Term] = []
    states = _chosen_states(f)
    windowed = f.entered_since is not None or f.entered_before is not None
    both_active = State.NEW in states and State.RETAINED in states and not windowed
    for state in states:
        if state is State.NEW and not both_active:
            if f.segment is not None:
                return None
            fs = _meet((new_since(now, th), POS_INF), window)
            if fs is not None:
                terms.append(Term(1, "fs", *fs))
        elif state is State.RETAINED and not both_active:
            if f.segment is not None or windowed:
                return None
            terms.append(Term(1, "la", *state_interval(state, now, th)))
            terms.append(Term(-1, "fs", new_since(now, th), POS_INF))
        elif state is not State.NEW:  # idle states, or new and retained as one la range
            la = _meet(state_interval(state, now, th), _entered_la(state, window, th), recency)
            if la is None:
                continue
            if f.segment is None:
                terms.append(Term(1, "la", *la))
                continue
            fm_class = SEGMENT_KEYS[f.segment][1]
            if fm_class:
                terms.append(Term(1, "rfm", *la, fm_class=fm_class))
            else:  # no class index: everyone in the range minus those of classes 1..3
                terms.append(Term(1, "la", *la))
                terms += [Term(-1, "rfm", *la, fm_class=c) for c in (1, 2, 3)]
    return terms


def score_arg(x: int, exclusive: bool = False) -> str:
    """A score bound as Redis reads it."""
    if x <= NEG_INF:
        return "-inf"
    if x >= POS_INF:
        return "+inf"
    return f"({x}" if exclusive else str(x)


def channel_order(channels: list[str]) -> list[str]:
    """Walk order of a partition's channels: users seen without a channel (`-`) last, because
    that is the one move between channels (to the first channel they show): a user moving
    ahead of the cursor comes from a key not walked yet."""
    return sorted(channels, key=lambda c: (c == NO_CHANNEL, c))


MAX_CURSOR_CHARS = 2048  # far above any cursor the API returns (ids are at most a few hundred bytes)
CURSOR_MAC_BYTES = 16  # of HMAC-SHA256: forging one is a 2**128 guess
SOURCES = ("la:", "rfm:")


class CursorError(AudienceFilterError):
    """A cursor the API did not make (forged, altered, truncated) or made for other filters."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, payload: str) -> str:
    return _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest()[:CURSOR_MAC_BYTES])


@dataclass(frozen=True, slots=True)
class Cursor:
    """The last user examined: partition, index key suffix, its score there, the member.

    On the wire it is `payload.mac`: the payload signed with the server's key, so a client
    can only hand back what some API process sharing that key returned; anything else is
    refused before it reaches Redis. The payload is still checked field by field."""

    partition: int
    source: str
    score: int
    member: bytes

    def encode(self, fingerprint: str, key: bytes) -> str:
        doc = [fingerprint, self.partition, self.source, self.score, self.member.decode("latin-1")]
        payload = _b64(orjson.dumps(doc))
        return f"{payload}.{_mac(key, payload)}"

    @classmethod
    def decode(cls, text: str, fingerprint: str, key: bytes) -> Cursor:
        if len(text) > MAX_CURSOR_CHARS:
            raise CursorError(f"cursor: over {MAX_CURSOR_CHARS} characters, not a cursor this API returned")
        payload, _, mac = text.partition(".")
        if not hmac.compare_digest(_mac(key, payload).encode(), mac.encode("utf-8", "replace")):
            raise CursorError(
                "cursor: not a cursor this API returned (altered, truncated, or signed with another "
                "secret); start again without it"
            )
        try:
            doc = orjson.loads(_unb64(payload))
        except (ValueError, binascii.Error) as exc:
            raise CursorError("cursor: its payload is not readable") from exc
        cursor = cls._checked(doc)
        if doc[0] != fingerprint:
            raise CursorError("cursor: it was made for other filters; start again without it")
        return cursor

    @classmethod
    def _checked(cls, doc: Any) -> Cursor:
        """Every field of a signed payload checked anyway: a leaked key must not reach Redis."""
        if not (isinstance(doc, list) and len(doc) == 5):
            raise CursorError("cursor: its payload is not a cursor")
        fp, partition, source, score, member = doc
        if not isinstance(fp, str) or not isinstance(member, str):
            raise CursorError("cursor: its payload is not a cursor")
        if type(partition) is not int or not 0 <= partition < 1_000_000:
            raise CursorError("cursor: its partition is out of range")
        if not isinstance(source, str) or not source.startswith(SOURCES) or len(source) > 300:
            raise CursorError("cursor: its index is not one the walk uses")
        if type(score) is not int or not NEG_INF <= score <= POS_INF:
            raise CursorError("cursor: its score is out of range")
        try:
            raw = member.encode("latin-1")
        except UnicodeEncodeError as exc:
            raise CursorError("cursor: its member is not a stored id") from exc
        return cls(partition, source, score, raw)


def after(score: int, member: bytes, cursor_score: int, cursor_member: bytes) -> bool:
    """Whether (score, member) comes after the cursor in a descending walk (Redis orders
    equal scores by member bytes, so REV gives members descending)."""
    return score < cursor_score or (score == cursor_score and member < cursor_member)
