"""The process indicators in one document, and cohort retention by first-seen day."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from service.api.problems import Problem, ValidationProblem
from service.api.routes.params import ChannelParam
from service.core.calendar import Calendar
from service.storage.queries import Queries


def indicator_routes(queries: Queries) -> APIRouter:
    router = APIRouter()

    @router.get("/retention", responses={422: {"model": Problem | ValidationProblem}})
    async def get_retention(
        cohort: Annotated[
            str | None, Query(max_length=10, description="a first-seen day, YYYY-MM-DD")
        ] = None,
        start: Annotated[
            str | None, Query(alias="from", max_length=10, description="first cohort day of a range")
        ] = None,
        end: Annotated[
            str | None, Query(alias="to", max_length=10, description="last cohort day of a range")
        ] = None,
        channel: ChannelParam = None,
    ) -> Any:
        """Cohort retention: users first seen on day d, and of them those active again on day
        d+N for each N of the profile's `retention_days` (default 1, 7, 30), with rates. Days
        are local days of the profile's `time_zone`."""
        try:
            if cohort:
                first = last = Calendar.from_iso(cohort)
            elif start and end:
                first, last = Calendar.from_iso(start), Calendar.from_iso(end)
            else:
                return JSONResponse({"detail": "give cohort=YYYY-MM-DD, or from= and to="}, status_code=422)
        except ValueError:
            return JSONResponse({"detail": "dates must be YYYY-MM-DD"}, status_code=422)
        if not 0 <= last - first <= 366:
            return JSONResponse({"detail": "a range is from <= to, at most 366 days"}, status_code=422)
        return await queries.retention(first, last, channel)

    @router.get("/indicators")
    async def get_indicators(channel: ChannelParam = None) -> dict[str, Any]:
        """The process indicators at the current clock, in one document: users; daily, weekly and
        monthly active users (active on the clock's local day, in the last 7 or 30 local days) and
        activity rates; registrations,
        paying users and payment rate (payers / registered); orders, GMV, average order value,
        revenue per user; users per lifecycle state; the funnel; and, without `channel`, the same
        per channel."""
        return await queries.indicators(channel)

    return router
