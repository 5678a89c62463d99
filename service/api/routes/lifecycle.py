"""Users per lifecycle state: now, under other thresholds (what-if), the return curve, and
per day, week or month (new, returning, resurrecting, dormant)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from service.api.models import IntervalLifecycle, Lifecycle, ReturnCurve, WhatIf
from service.api.problems import Problem, ValidationProblem
from service.api.routes.params import ChannelParam, DurationParam
from service.core.calendar import Calendar
from service.core.durations import DurationError, format_duration, parse_duration
from service.core.intervals import IntervalError, granularity
from service.core.lifecycle import Thresholds, ThresholdsError, validate_thresholds
from service.core.profile import Profile
from service.settings import Settings
from service.storage.intervals import interval_lifecycle
from service.storage.queries import Queries

_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Documented, but checked by the handler so that every bad value is a 400 saying what is wrong.
_KINDS: dict[str, Any] = {"enum": ["day", "week", "month"]}
_DAY: dict[str, Any] = {"pattern": _ISO_DAY.pattern}


def _local_day(name: str, text: str | None) -> int:
    """The day number of a `YYYY-MM-DD` parameter; `IntervalError` saying what is wrong."""
    if text is None:
        raise IntervalError(f"{name} is required, a day as YYYY-MM-DD")
    try:
        if not _ISO_DAY.match(text):
            raise ValueError(text)
        return Calendar.from_iso(text)
    except ValueError:
        raise IntervalError(f"{name} must be a day as YYYY-MM-DD (got {text[:20]!r})") from None


def lifecycle_routes(queries: Queries, profile: Profile, settings: Settings) -> APIRouter:
    router = APIRouter()

    @router.get("/lifecycle", response_model=Lifecycle)
    async def get_lifecycle(channel: ChannelParam = None) -> dict[str, Any]:
        """Exact number of users in each lifecycle state at the current clock."""
        return await queries.lifecycle(channel)

    @router.get("/lifecycle/return-curve", response_model=ReturnCurve)
    async def get_return_curve(channel: ChannelParam = None) -> dict[str, Any]:
        """For each idle time d (1 hour to 2 years, log-spaced): returns after a gap >= d, users
        idle >= d now (censored: they may still return), and the estimated probability that a
        user idle for d comes back. Exact at the boundaries."""
        return await queries.return_curve(channel)

    @router.get(
        "/lifecycle/intervals",
        response_model=IntervalLifecycle,
        responses={400: {"model": Problem, "description": "a missing or bad interval, from or to"}},
    )
    async def get_intervals(
        interval: Annotated[
            str | None, Query(description="day, week (from Monday) or month", json_schema_extra=_KINDS)
        ] = None,
        start: Annotated[
            str | None, Query(alias="from", description="first day, YYYY-MM-DD", json_schema_extra=_DAY)
        ] = None,
        end: Annotated[
            str | None, Query(alias="to", description="last day, YYYY-MM-DD", json_schema_extra=_DAY)
        ] = None,
        channel: ChannelParam = None,
    ) -> Any:
        """Users new (first activity in the interval), returning (active in it and the one
        before), resurrecting (active in it, not the one before, active earlier) and dormant
        (active in the one before, not in it; a positive count) in each day, week or month
        holding a day of `from`..`to`, in the profile's time zone, up to the clock's interval.
        Exact for any past range whenever the events came: counted by the batch commit."""
        try:
            if interval is None:
                raise IntervalError("interval is required: day, week or month")
            g = granularity(interval)
            body = await interval_lifecycle(
                queries, g, _local_day("from", start), _local_day("to", end), channel
            )
        except IntervalError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=400)
        return body

    @router.get(
        "/lifecycle/what-if", response_model=WhatIf, responses={422: {"model": Problem | ValidationProblem}}
    )
    async def get_what_if(
        new_window: DurationParam = None,
        silent_after: DurationParam = None,
        churn_after: DurationParam = None,
        dead_after: DurationParam = None,
        channel: ChannelParam = None,
    ) -> Any:
        """Exact users per state at the current clock under other thresholds (absent ones: the
        profile's), from the indexes without walking users."""
        base = profile.thresholds
        try:
            th = Thresholds(
                parse_duration(new_window) if new_window else base.new_window,
                parse_duration(silent_after) if silent_after else base.silent_after,
                parse_duration(churn_after) if churn_after else base.churn_after,
                parse_duration(dead_after) if dead_after else base.dead_after,
            )
        except DurationError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=422)
        try:
            validate_thresholds(th)
        except ThresholdsError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=422)
        if th.new_window > settings.first_index_window_ms:
            detail = (
                f"new_window is over {format_duration(settings.first_index_window_ms)}, the longest the "
                "first_seen index keeps (LIFECYCLE_WHATIF_MAX_NEW_WINDOW)"
            )
            return JSONResponse({"detail": detail}, status_code=422)
        body = await queries.lifecycle(channel, thresholds=th)
        names = ("new_window", "silent_after", "churn_after", "dead_after")
        values = (th.new_window, th.silent_after, th.churn_after, th.dead_after)
        body["thresholds"] = {n: format_duration(v) for n, v in zip(names, values, strict=True)}
        return body

    return router
