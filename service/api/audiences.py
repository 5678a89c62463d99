"""HTTP routes of audiences: who is in one (paged, or streamed as NDJSON) and the named ones' sizes.

The filters are validated by the pure core (`parse_filter`), so a bad one is a 422 that
names the parameter; the walk and the counts are `AudienceReader`'s.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel

from service.api.problems import Problem, ValidationProblem
from service.core.audience_filters import AudienceFilter, AudienceFilterError, parse_filter
from service.core.audiences import Cursor, CursorError
from service.core.instants import iso_ms
from service.settings import Settings
from service.storage.audiences import AudienceReader

NDJSON = "application/x-ndjson"
log = logging.getLogger(__name__)
STATES_HELP = "new, retained, silent, churned, dead (repeatable)"


class AudienceUser(BaseModel):
    user_id: str
    state: str
    channel: str | None
    stage: str | None
    segment: str
    last_active: str
    entered_at: str


class AudiencePage(BaseModel):
    as_of: str
    users: list[AudienceUser]
    next_cursor: str | None


class NamedAudience(BaseModel):
    name: str
    description: str
    filters: dict[str, Any]
    size: int


class Audiences(BaseModel):
    as_of: str
    audiences: list[NamedAudience]


Short = Annotated[str | None, Query(max_length=64)]
Instant = Annotated[
    str | None,
    Query(
        max_length=40,
        description="ISO-8601 instant with offset, a day YYYY-MM-DD (its local midnight in the profile's "
        "time zone), or a duration before the clock: 7d, 12h",
    ),
]
Limit = Annotated[int, Query(ge=1, le=1000, description="users per page")]
CursorParam = Annotated[
    str | None, Query(description="`next_cursor` of the previous page (any other value is a 400)")
]
Format = Annotated[
    Literal["json", "ndjson"] | None,
    Query(description="ndjson: every matching user, one JSON object per line, no pagination"),
]


def cursor_key(settings: Settings) -> bytes:
    """The key that signs page cursors: the configured secret, else one derived from the API key
    (shared by the replicas already), else random for this process, logged since cursors then
    fail on another replica or after a restart."""
    if settings.cursor_secret is not None:
        secret = settings.cursor_secret.get_secret_value().encode()
        return hmac.new(b"lifecycle audience cursors", secret, hashlib.sha256).digest()
    if settings.api_key is not None:
        secret = settings.api_key.get_secret_value().encode()
        return hmac.new(b"lifecycle audience cursors from the api key", secret, hashlib.sha256).digest()
    log.warning(
        "LIFECYCLE_CURSOR_SECRET and LIFECYCLE_API_KEY are unset: audience cursors are signed with "
        "a random key of this process and fail on other replicas or after a restart"
    )
    return os.urandom(32)


def audience_routes(reader: AudienceReader) -> APIRouter:
    router = APIRouter(tags=["audiences"])
    profile = reader.profile
    named = {a.name: a for a in profile.audiences}
    responses: dict[int | str, dict[str, Any]] = {
        200: {"content": {NDJSON: {}}, "description": "a page (JSON), or every user (NDJSON)"},
        400: {"model": Problem, "description": "a cursor this API did not return, or for other filters"},
        422: {"model": Problem | ValidationProblem, "description": "a bad filter"},
    }

    async def answer(
        request: Request, f: AudienceFilter, limit: int, cursor: str | None, fmt: str | None, name: str
    ) -> Any:
        try:
            start = Cursor.decode(cursor, f.fingerprint(), reader.cursor_key) if cursor else None
        except CursorError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=400)
        wants_lines = fmt == "ndjson" or (fmt is None and NDJSON in request.headers.get("accept", ""))
        if wants_lines:
            return StreamingResponse(
                _lines(reader, f),
                media_type=NDJSON,
                headers={"Content-Disposition": f'attachment; filename="{name}.ndjson"'},
            )
        page = await reader.page(f, start, limit)
        return {"as_of": iso_ms(page.as_of), "users": page.users, "next_cursor": page.next_cursor}

    @router.get("/audiences/users", response_model=AudiencePage, responses=responses)
    async def get_audience_users(
        request: Request,
        state: Annotated[
            list[str] | None,
            Query(max_length=64, description="new, retained, silent, churned, dead (repeatable)"),
        ] = None,
        channel: Short = None,
        stage: Annotated[
            str | None, Query(max_length=64, description="a funnel stage the user reached")
        ] = None,
        not_stage: Annotated[
            str | None, Query(max_length=64, description="a funnel stage not reached")
        ] = None,
        segment: Annotated[str | None, Query(max_length=64, description="an RFM segment")] = None,
        entered_since: Instant = None,
        entered_before: Instant = None,
        limit: Limit = 100,
        cursor: CursorParam = None,
        format: Format = None,
    ) -> Any:
        """Users matching the filters at the current clock, by cursor pages (stable while events
        arrive: a user appears at most once per walk) or, with `format=ndjson` or
        `Accept: application/x-ndjson`, all of them streamed. `entered_*` bound when the user
        entered their current state (e.g. silent at last_active + silent_after)."""
        raw = {
            "state": state,
            "channel": channel,
            "stage": stage,
            "not_stage": not_stage,
            "segment": segment,
            "entered_since": entered_since,
            "entered_before": entered_before,
        }
        try:
            f = parse_filter({k: v for k, v in raw.items() if v is not None}, reader.stage_names)
        except AudienceFilterError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=422)
        return await answer(request, f, limit, cursor, format, "audience")

    @router.get("/audiences", response_model=Audiences)
    async def get_audiences() -> dict[str, Any]:
        """The profile's named audiences with their filters and exact sizes now (range counts
        when the indexes answer the filters, else a walk of the candidates)."""
        now = await reader.q.now_ms()
        out = []
        for a in profile.audiences:
            body = {
                "name": a.name,
                "description": a.description,
                "filters": a.filter.to_json(reader.stage_names),
            }
            out.append({**body, "size": await reader.count(a.filter)})
        return {"as_of": iso_ms(now), "audiences": out}

    @router.get(
        "/audiences/{name}/users",
        response_model=AudiencePage,
        responses={**responses, 404: {"model": Problem, "description": "no audience of that name"}},
    )
    async def get_named_audience_users(
        request: Request,
        name: Annotated[str, Path(max_length=64)],
        limit: Limit = 100,
        cursor: CursorParam = None,
        format: Format = None,
    ) -> Any:
        """The users of a named audience of the profile (as `/audiences/users` with its filters)."""
        audience = named.get(name)
        if audience is None:
            detail = f"no audience {name!r}; the profile has: {', '.join(named) or 'none'}"
            return JSONResponse({"detail": detail}, status_code=404)
        return await answer(request, audience.filter, limit, cursor, format, name)

    return router


async def _lines(reader: AudienceReader, f: AudienceFilter) -> AsyncIterator[bytes]:
    async for _, users in reader.stream(f):
        yield b"".join(orjson.dumps(u) + b"\n" for u in users)
