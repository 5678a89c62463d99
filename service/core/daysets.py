"""A user's set of active days in its record: a bitmap in memory, the shortest of two forms stored.

In memory the set is an int, bit k meaning "active on the record's base day + k"
(`service.core.interval_lifecycle` says which day that is). Stored, it is a JSON list:

- `[bits]`: the bitmap itself, a JSON int while it is small, else unpadded url-safe base64
  of its little-endian bytes (6 days a character): a user active on many days of its life;
- `[gap, length, gap, length, ...]`: runs of consecutive active days, each gap counted from
  the end of the run before (the first from bit 0): a user active now and then over years.

The list form is what tells the two apart (one element, or an even number), and a list is
a type no other trailing field of a record has. So the stored size is at most one
character per 6 days from the first-seen day to the last active one (about 61 bytes a
year), and far less for users who are active in streaks or rarely.
"""

from __future__ import annotations

import base64
import re
from typing import Any

_SMALL = 1 << 24  # below this a JSON int (<= 8 digits) is no longer than its base64 text
_RUNS_FROM = 64  # bitmaps shorter than this are never longer than their runs
_ONES = re.compile("1+")


class DaySetError(ValueError):
    """A stored day set that is neither form (a corrupted record)."""


def encode(bits: int) -> list[Any]:
    """The stored form of a non-empty bitmap: whichever of the two is shorter."""
    if bits < _SMALL:
        return [bits]
    raw = bits.to_bytes((bits.bit_length() + 7) // 8, "little")
    text = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    if bits.bit_length() >= _RUNS_FROM:
        runs = _runs(bits)
        if sum(len(str(n)) + 1 for n in runs) < len(text) + 2:
            return runs
    return [text]


def decode(stored: list[Any]) -> int:
    """The bitmap of either stored form."""
    if len(stored) == 1:
        value = stored[0]
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "little")
    elif len(stored) % 2 == 0 and all(isinstance(n, int) and n >= 0 for n in stored):
        bits = 0
        pos = 0
        for i in range(0, len(stored), 2):
            pos += stored[i]
            length = stored[i + 1]
            bits |= ((1 << length) - 1) << pos
            pos += length
        return bits
    raise DaySetError(f"not a stored day set: {stored!r}")


def _runs(bits: int) -> list[int]:
    """`[gap, length, ...]` of the runs of ones, lowest bit first."""
    out: list[int] = []
    end = 0
    for m in _ONES.finditer(bin(bits)[:1:-1]):  # the binary digits, lowest bit first
        out += (m.start() - end, m.end() - m.start())
        end = m.end()
    return out


def days_of(bits: int) -> list[int]:
    """The offsets of the set bits, ascending."""
    return [m.start() + i for m in _ONES.finditer(bin(bits)[:1:-1]) for i in range(m.end() - m.start())]
