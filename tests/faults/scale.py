"""How big the fault-injection runs are: `LIFECYCLE_FAULTS=short` (the default, what CI
runs inside `make test`) or `full` (the full sizes, `make faults`)."""

from __future__ import annotations

import os


def full() -> bool:
    mode = os.environ.get("LIFECYCLE_FAULTS", "short")
    if mode not in ("short", "full"):
        raise ValueError(f"LIFECYCLE_FAULTS={mode!r}; expected 'short' or 'full'")
    return mode == "full"
