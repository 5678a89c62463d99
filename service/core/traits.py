"""A user's traits: the scalar facts an `identify` call states (plan, country, ...).

Only the traits the profile names are kept, each a string (cut to 256 characters), a
number or a boolean; a `null` removes one. The latest identify in the partition's order
wins. Bounded by the profile: at most `MAX_TRAITS` names.
"""

from __future__ import annotations

import math
import re
from typing import Any

from service.core.records import UserRecord

MAX_TRAITS = 32
MAX_TRAIT_TEXT = 256
TRAIT_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


def set_traits(rec: UserRecord, given: Any, names: frozenset[str]) -> None:
    """Take the named scalar traits of one identify call's `traits` object."""
    if not isinstance(given, dict):
        return
    for name in sorted(names.intersection(given)):
        value = given[name]
        if value is None:
            rec.traits.pop(name, None)
        elif isinstance(value, str):
            rec.traits[name] = value[:MAX_TRAIT_TEXT]
        elif isinstance(value, bool | int) or (isinstance(value, float) and math.isfinite(value)):
            rec.traits[name] = value if isinstance(value, bool) or abs(value) < 2**53 else float(value)


def parse_trait_names(value: Any, source: str) -> frozenset[str]:
    """The profile's `traits`: a list of at most `MAX_TRAITS` names. Raises ValueError."""
    if value is None:
        return frozenset()
    if (
        not isinstance(value, list)
        or len(value) > MAX_TRAITS
        or not all(isinstance(v, str) and TRAIT_NAME.fullmatch(v) for v in value)
    ):
        raise ValueError(
            f"{source}: traits: expected a list of at most {MAX_TRAITS} names matching {TRAIT_NAME.pattern}"
        )
    return frozenset(value)
