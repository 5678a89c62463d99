"""RFM segment names, from important_value to general_recall, by (recent, frequency/monetary class).

The class is `rfm_class` of a record (2: frequent, 1: high value, 3: both, 0: neither);
recency is read from `last_active` at the clock. Its own module so the profile's
audience filters can name segments without importing the batch rules.
"""

from __future__ import annotations

RFM_SEGMENTS: dict[tuple[int, int], str] = {
    (1, 3): "important_value",
    (1, 1): "important_develop",
    (0, 3): "important_retain",
    (0, 1): "important_recall",
    (1, 2): "general_value",
    (1, 0): "general_develop",
    (0, 2): "general_retain",
    (0, 0): "general_recall",
}

SEGMENT_KEYS: dict[str, tuple[int, int]] = {name: key for key, name in RFM_SEGMENTS.items()}
