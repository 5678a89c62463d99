"""The Segment/RudderStack HTTP tracking API: `/v1/batch`, `/v1/track`, `/v1/identify`, ...

Same guarantees as `POST /v1/events`: the answer comes after the broker's `acks=all`,
rejected messages are listed by index with their reason, and the body is bounded before
and after gunzip. Authenticated by a write key (`LIFECYCLE_WRITE_KEYS`), never the API key.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.api.collector import Collector, CollectorError, decode_body
from service.api.models import CollectRefused, CollectResponse
from service.api.problems import Problem
from service.api.routes.collect import read_bounded
from service.api.tracking import basic_user, key_matches, map_messages, parse_tracking
from service.settings import Settings

TRACKING_KINDS = ("track", "identify", "page", "screen", "group", "alias")
# Segment's browser SDK (analytics-next) posts to the first letter: /v1/t, /v1/i, /v1/p ...
SHORT_PATHS = {f"/v1/{kind[0]}": kind for kind in TRACKING_KINDS}
TRACKING_PATHS = frozenset({"/v1/batch", *(f"/v1/{kind}" for kind in TRACKING_KINDS), *SHORT_PATHS})

_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": CollectRefused, "description": "not JSON, or every message rejected"},
    401: {"model": Problem, "description": "missing or unknown write key"},
    413: {"model": Problem, "description": "too many messages or too large a body"},
    415: {"model": Problem, "description": "unsupported Content-Encoding"},
    503: {"model": Problem, "description": "broker unreachable; retry after `Retry-After` s"},
}

_MESSAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "a Segment tracking-spec message (track, identify, page, screen, group, alias)",
    "properties": {
        "messageId": {"type": "string", "minLength": 1, "maxLength": 128},
        "userId": {"type": "string", "maxLength": 128},
        "anonymousId": {"type": "string", "maxLength": 128},
        "event": {"type": "string"},
        "timestamp": {"type": "string", "format": "date-time"},
        "properties": {"type": "object"},
        "traits": {"type": "object"},
        "context": {"type": "object"},
        "previousId": {"type": "string", "maxLength": 128},
    },
}


def tracking_routes(settings: Settings, collector: Collector) -> APIRouter:
    router = APIRouter(tags=["tracking"])
    keys = [key.get_secret_value().encode() for key in settings.write_keys]
    event_map = settings.loaded_profile.event_map

    async def handle(request: Request, kind: str | None) -> Any:
        body = await read_bounded(request, settings.collector_max_bytes)
        if body is None:
            return JSONResponse({"detail": "request body too large"}, status_code=413)
        by_header = key_matches(basic_user(request.headers.get("authorization", "")), keys)
        try:
            try:
                raw = decode_body(body, request.headers.get("content-encoding"), settings.collector_max_bytes)
                messages, body_key = parse_tracking(raw, kind)
            except CollectorError:
                if not by_header:  # a caller without a key learns nothing about the body
                    return _unauthorized()
                raise
            if not by_header and not key_matches(body_key if isinstance(body_key, str) else None, keys):
                return _unauthorized()
            now = int(time.time() * 1000)
            accepted, rejected = map_messages(
                messages,
                received_ms=now,
                bounds=settings.time_bounds(now),
                max_events=settings.collector_max_events,
                event_map=event_map,
            )
            result = await collector.send(accepted, rejected)
        except CollectorError as exc:
            headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
            return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=headers)
        if result.rejected and not result.accepted:
            return JSONResponse(
                {"detail": "every message was rejected", "accepted": 0, "rejected": result.rejected},
                status_code=400,
            )
        return {"accepted": result.accepted, "rejected": result.rejected}

    batch_body = {
        "type": "object",
        "required": ["batch"],
        "properties": {
            "batch": {
                "type": "array",
                "items": _MESSAGE_SCHEMA,
                "minItems": 1,
                "maxItems": settings.collector_max_events,
            },
            "writeKey": {"type": "string"},
        },
    }

    @router.post(
        "/v1/batch",
        response_model=CollectResponse,
        responses=_RESPONSES,
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": batch_body}}}
        },
    )
    async def post_batch(request: Request) -> Any:
        """A batch of tracking messages; a 2xx means the accepted ones are durable in Kafka."""
        return await handle(request, None)

    for kind in TRACKING_KINDS:
        router.add_api_route(
            f"/v1/{kind}",
            _single(handle, kind),
            methods=["POST"],
            response_model=CollectResponse,
            responses=_RESPONSES,
            summary=f"Post {kind.title()}",
            openapi_extra={
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _MESSAGE_SCHEMA}},
                }
            },
        )
    for path, kind in SHORT_PATHS.items():  # the same endpoints; kept out of the OpenAPI document
        router.add_api_route(path, _single(handle, kind), methods=["POST"], include_in_schema=False)
    return router


def _single(handle: Any, kind: str) -> Any:
    async def post_one(request: Request) -> Any:
        """One tracking message of the endpoint's type; a 2xx means it is durable in Kafka."""
        return await handle(request, kind)

    post_one.__name__ = f"post_{kind}"
    return post_one


def _unauthorized() -> JSONResponse:
    return JSONResponse(
        {"detail": "missing or unknown write key"},
        status_code=401,
        headers={"WWW-Authenticate": 'Basic realm="tracking"'},
    )
