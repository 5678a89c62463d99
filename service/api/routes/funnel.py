"""The core-path funnel: users who reached each stage, with conversions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from service.api.models import Funnel
from service.api.routes.params import ChannelParam
from service.storage.queries import Queries


def funnel_routes(queries: Queries) -> APIRouter:
    router = APIRouter()

    @router.get("/funnel", response_model=Funnel)
    async def get_funnel(channel: ChannelParam = None) -> dict[str, Any]:
        """Users who reached each core-path stage (monotone), with stage-to-stage conversion."""
        return await queries.funnel(channel)

    return router
