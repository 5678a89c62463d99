"""POST /v1/events: the collector's HTTP edge, with the body bounded before it is read."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from service.api.collector import Collector, CollectorError
from service.api.models import CollectRefused, CollectResponse
from service.api.problems import Problem
from service.core.events import MAX_AMOUNT, MAX_TS_MS
from service.settings import Settings


def _event_schema(min_ts: int) -> dict[str, Any]:
    """One event's JSON schema; `ts` within the settings' bounds (the later one moves with
    the clock, so only its ceiling is in the schema)."""
    return {
        "type": "object",
        "required": ["event_id", "user_id", "type", "ts"],
        "additionalProperties": False,
        "properties": {
            "event_id": {"type": "string", "minLength": 1, "maxLength": 128},
            "user_id": {"type": "string", "minLength": 1, "maxLength": 128},
            "type": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[^\\x00-\\x1f\\x7f]+$"},
            "ts": {
                "oneOf": [
                    {"type": "string", "format": "date-time", "maxLength": 40},
                    {"type": "integer", "minimum": min_ts, "maximum": MAX_TS_MS},
                ],
                "description": "event time: from LIFECYCLE_MIN_EVENT_TIME to the server's clock "
                "plus LIFECYCLE_MAX_FUTURE",
            },
            "channel": {"type": "string", "pattern": "^[A-Za-z0-9_.\\-]{1,64}$", "not": {"const": "-"}},
            "amount": {"type": "number", "minimum": -MAX_AMOUNT, "maximum": MAX_AMOUNT},
            "properties": {"type": "object"},
        },
    }


async def read_bounded(request: Request, limit: int) -> bytes | None:
    """The body, or None when it exceeds `limit` bytes: refused on a larger Content-Length
    before any of it is read, and a chunked upload is never read into memory past the limit."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def collect_routes(settings: Settings, collector: Collector) -> APIRouter:
    router = APIRouter()
    event_schema = _event_schema(settings.min_event_ms)

    @router.post(
        "/v1/events",
        response_model=CollectResponse,
        responses={
            400: {"model": CollectRefused, "description": "not JSON, or every event rejected"},
            413: {"model": Problem, "description": "too many events or too large a body"},
            415: {"model": Problem, "description": "unsupported Content-Encoding"},
            503: {"model": Problem, "description": "broker unreachable; retry after `Retry-After` s"},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "oneOf": [
                                event_schema,
                                {
                                    "type": "array",
                                    "items": event_schema,
                                    "minItems": 1,
                                    "maxItems": settings.collector_max_events,
                                },
                            ]
                        }
                    }
                },
            }
        },
    )
    async def post_events(request: Request, response: Response) -> Any:
        """Collect events; a 2xx means the accepted ones are durable in Kafka (`acks=all`).

        Accepts one event or an array (gzip with `Content-Encoding: gzip`). Rejected events
        are listed by index with the reason; the others are accepted regardless.
        """
        body = await read_bounded(request, settings.collector_max_bytes)
        if body is None:
            return JSONResponse({"detail": "request body too large"}, status_code=413)
        try:
            result = await collector.collect(body, request.headers.get("content-encoding"))
        except CollectorError as exc:
            headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
            return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=headers)
        if result.rejected and not result.accepted:
            detail = "every event was rejected"
            return JSONResponse(
                {"detail": detail, "accepted": 0, "rejected": result.rejected}, status_code=400
            )
        return {"accepted": result.accepted, "rejected": result.rejected}

    return router
