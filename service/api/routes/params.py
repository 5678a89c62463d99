"""Query parameters several routers share, bounded and shaped before any handler runs."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

ChannelParam = Annotated[
    str | None,
    Query(max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$", description="acquisition channel; '-' for none"),
]


DurationParam = Annotated[
    str | None, Query(max_length=16, pattern=r"^\d+(\.\d+)?(ms|s|m|h|d|w)$", description="e.g. 30d, 12h")
]
