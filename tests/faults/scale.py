"""Size of the fault-injection runs: `LIFECYCLE_FAULTS=short` (default, CI) or `full` (the issue's sizes)."""

from __future__ import annotations

import os


def full() -> bool:
    """Whether to run the issue's full sizes rather than CI's short form."""
    return os.environ.get("LIFECYCLE_FAULTS", "short") == "full"
