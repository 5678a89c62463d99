"""Users per lifecycle state: now, under other thresholds (what-if), and the return curve."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.api.models import Lifecycle, ReturnCurve, WhatIf
from service.api.problems import Problem, ValidationProblem
from service.api.routes.params import ChannelParam, DurationParam
from service.core.durations import DurationError, format_duration, parse_duration
from service.core.lifecycle import Thresholds, ThresholdsError, validate_thresholds
from service.core.profile import Profile
from service.settings import Settings
from service.storage.queries import Queries


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
