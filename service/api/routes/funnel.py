"""The funnels: the core path (`/funnel`, as it always was) and every funnel by name
(`/funnels`, `/funnels/{name}`, the core path among them as `core`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse

from service.api.models import Funnel, FunnelList, NamedFunnelOut
from service.api.problems import Problem, ValidationProblem
from service.api.routes.params import ChannelParam
from service.storage.funnel_queries import FunnelQueries, NoCohorts
from service.storage.queries import Queries


def funnel_routes(queries: Queries) -> APIRouter:
    router = APIRouter()
    funnels = FunnelQueries(queries)

    @router.get("/funnel", response_model=Funnel)
    async def get_funnel(channel: ChannelParam = None) -> dict[str, Any]:
        """Users who reached each core-path stage (monotone), with stage-to-stage conversion."""
        return await queries.funnel(channel)

    @router.get("/funnels", response_model=FunnelList)
    async def get_funnels(channel: ChannelParam = None) -> dict[str, Any]:
        """Every funnel of the profile (`core` first, then `funnels:`): order, window, users per
        step, users who entered and completed it, and the overall conversion."""
        return await funnels.funnels(channel)

    @router.get(
        "/funnels/{name}",
        response_model=NamedFunnelOut,
        responses={404: {"model": Problem}, 422: {"model": Problem | ValidationProblem}},
    )
    async def get_named_funnel(
        name: Annotated[str, Path(max_length=32, pattern=r"^[a-z][a-z0-9_]*$")],
        channel: ChannelParam = None,
        cohort: Annotated[
            Literal["week"] | None,
            Query(description="`week`: also per week the users entered (Monday-based)"),
        ] = None,
    ) -> Any:
        """Users at each step of a funnel or further, with conversions; with `cohort=week` also
        per weekly cohort of the users' entry into the funnel (named funnels only)."""
        try:
            found = await funnels.funnel(name, channel, cohorts=cohort == "week")
        except NoCohorts as exc:
            return JSONResponse({"detail": str(exc)}, status_code=422)
        if found is None:
            known = ", ".join(funnels.definitions)
            return JSONResponse(
                {"detail": f"no funnel {name!r}; the profile's funnels: {known}"}, status_code=404
            )
        return found

    return router
