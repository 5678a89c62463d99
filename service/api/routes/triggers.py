"""The triggers' outcomes, summed per type and channel."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from service.api.routes.params import ChannelParam
from service.storage.queries import Queries


def trigger_routes(queries: Queries) -> APIRouter:
    router = APIRouter()

    @router.get("/triggers/summary")
    async def get_trigger_summary(channel: ChannelParam = None) -> dict[str, Any]:
        """Per trigger type and channel: sent, held out, capped, suppressed, cancelled, deferred;
        delivered, click-through, payment click and payment rates; recall success and conversion
        for the treated and the holdout group, and the uplift between them."""
        return await queries.trigger_summary(channel)

    return router
