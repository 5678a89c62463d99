"""What the web console needs from the API: its page and assets, lifecycle history and `/ops`.

The page (built from `console/` into `console_static/`, shipped in the package) is served
without the API key so that it can load and ask for one; everything it reads stays behind
the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from service.api.history import History
from service.api.ops import Ops
from service.core.history import MAX_DAYS

CONSOLE_STATIC = Path(__file__).parent / "console_static"  # `npm run build` in console/ writes it
CONSOLE_PAGES = frozenset({"/", "/console", "/console/"})


def is_console_path(path: str) -> bool:
    """The page and its assets: open, so that the page can ask for the key."""
    return path in CONSOLE_PAGES or path.startswith("/console/")


class HistoryDay(BaseModel):
    day: str = Field(description="the clock's day, YYYY-MM-DD")
    as_of: int = Field(description="clock time (epoch ms) of the snapshot; today: now")
    total: int
    counts: dict[str, int] = Field(description="users per state: new, retained, silent, churned, dead")


class LifecycleHistory(BaseModel):
    as_of: int
    days: list[HistoryDay]


class Lag(BaseModel):
    total: int
    partitions: dict[str, int]


class OpsStatus(BaseModel):
    as_of: int
    dlq_events: int
    events_applied: int
    duplicates: int
    misrouted: int
    outbox_pending: int
    lag: Lag | None
    applied_offsets: dict[str, int]
    last_commit_ms: int | None
    kafka_error: str | None


def console_routes(history: History, ops: Ops) -> APIRouter:
    router = APIRouter(tags=["console"])

    @router.get("/lifecycle/history", response_model=LifecycleHistory)
    async def get_lifecycle_history(
        days: Annotated[int, Query(ge=1, le=MAX_DAYS, description="days back, today included")] = 14,
    ) -> dict[str, Any]:
        """Users per lifecycle state at the end of each of the last days (today: now), from the
        snapshots API processes record every `LIFECYCLE_HISTORY_INTERVAL`; days before the first
        snapshot are absent. History starts when an API first runs."""
        return await history.read(days)

    @router.get("/ops", response_model=OpsStatus)
    async def get_ops() -> dict[str, Any]:
        """At a glance: dead-lettered events, events applied, duplicates, re-routed events, the
        trigger outbox backlog, consumer lag per partition (topic end offset minus the offset
        applied in Redis; null with `kafka_error` when the broker does not answer) and the wall
        time of the last batch commit."""
        return await ops.document()

    return router


def serve_console(app: FastAPI) -> None:
    """The page at `/` and `/console`, its assets under `/console/assets/`."""
    index = CONSOLE_STATIC / "index.html"
    if not index.is_file():
        return  # a source tree where `npm run build` never ran: the API works without it

    @app.get("/", include_in_schema=False)
    @app.get("/console", include_in_schema=False)
    @app.get("/console/", include_in_schema=False)
    async def console() -> FileResponse:
        return FileResponse(index, headers={"Cache-Control": "no-cache"})

    app.mount("/console/assets", StaticFiles(directory=CONSOLE_STATIC / "assets"), name="console-assets")
