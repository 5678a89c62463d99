"""Erasure over HTTP: erase or restore a user, and read the record of requests.

These endpoints take the admin key only (`LIFECYCLE_ADMIN_KEY`, checked by the app's
middleware with `admin_refusal`): the read key reads and a
write key writes events, and neither may erase. A request is answered 202 once the broker
acknowledged its control message; the user's worker applies it in order with the user's
events, within a batch. The record of requests keeps who asked and when, never the id.
"""

from __future__ import annotations

import hmac
import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse

from service.api.collector import Collector, CollectorError
from service.core.controls import control_message
from service.core.events import MAX_ID_LEN
from service.settings import Settings
from service.storage import erasure_log
from service.storage.client import AnyRedis

ADMIN_HEADERS = {"WWW-Authenticate": "Bearer"}
_ADMIN_REPLIES: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or wrong admin key"},
    403: {"description": "erasure over HTTP is off (no LIFECYCLE_ADMIN_KEY)"},
}
_REQUEST_REPLIES: dict[int | str, dict[str, Any]] = {
    **_ADMIN_REPLIES,
    400: {"description": "a requester that is blank or not printable"},
    503: {"description": "the broker did not acknowledge the request (Retry-After)"},
}
UserPath = Annotated[str, Path(min_length=1, max_length=MAX_ID_LEN)]
Requester = Annotated[
    str,
    Query(min_length=1, max_length=erasure_log.MAX_REQUESTER_LEN, description="who asks, for the record"),
]


def is_admin_request(method: str, path: str) -> bool:
    """The erasure endpoints: they take the admin key, not the API key."""
    if path == "/erasures":
        return True
    if not path.startswith("/users/"):
        return False
    return method == "DELETE" or (method == "POST" and path.endswith("/restore"))


def admin_refusal(request: Request, key: str | None) -> JSONResponse | None:
    """Why an erasure request may not pass (403: erasure over HTTP is off; 401: not the admin
    key), or None; checked before anything else of the request, so a caller without the key
    learns nothing about the endpoint's parameters."""
    if key is None:
        return JSONResponse(
            {"detail": "erasure over HTTP is off: set LIFECYCLE_ADMIN_KEY, or use `lifecycle users delete`"},
            403,
        )
    given = request.headers.get("x-api-key", "")
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        given = auth[7:]
    if not hmac.compare_digest(given.encode(), key.encode()):
        return JSONResponse({"detail": "missing or wrong admin key"}, 401, headers=ADMIN_HEADERS)
    return None


def erasure_routes(settings: Settings, redis: AnyRedis, collector: Collector) -> APIRouter:
    router = APIRouter()
    prefix = settings.key_prefix

    async def submit(action: str, user_id: str, requester: str) -> dict[str, Any]:
        try:
            who = erasure_log.checked_requester(requester)
        except erasure_log.RequesterError as exc:
            raise HTTPException(400, str(exc)) from exc
        request_id = uuid.uuid4().hex
        at = int(time.time() * 1000)
        entry = erasure_log.Entry(at, request_id, action, who, "api", "requested")
        await erasure_log.append(redis, prefix, [entry])
        try:
            await collector.send_control(user_id, control_message(action, user_id, request_id, at))
        except CollectorError as exc:
            failed = erasure_log.Entry(int(time.time() * 1000), request_id, action, who, "api", "failed")
            await erasure_log.append(redis, prefix, [failed])
            headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
            raise HTTPException(exc.status, exc.detail, headers=headers) from exc
        sent = erasure_log.Entry(int(time.time() * 1000), request_id, action, who, "api", "sent")
        await erasure_log.append(redis, prefix, [sent])
        return {"request_id": request_id, "action": action, "status": "sent"}

    @router.delete(
        "/users/{user_id:user_id}",
        status_code=202,
        responses=_REQUEST_REPLIES,
    )
    async def erase_user(user_id: UserPath, requester: Requester) -> dict[str, Any]:
        """Erase a user from every record, count, index, audience and pending trigger, and drop
        its later events until a restore (admin key). Applied by its worker, in order."""
        return await submit("erase", user_id, requester)

    @router.post(
        "/users/{user_id:user_id}/restore",
        status_code=202,
        responses=_REQUEST_REPLIES,
    )
    async def restore_user(user_id: UserPath, requester: Requester) -> dict[str, Any]:
        """Lift an erasure's suppression: later events of the id make a new user (admin key)."""
        return await submit("restore", user_id, requester)

    @router.get("/erasures", responses=_ADMIN_REPLIES)
    async def get_erasures(limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
        """The latest erase and restore requests, newest first: when, who, how, status; no ids."""
        return {"erasures": [e.to_json() for e in await erasure_log.latest(redis, prefix, limit)]}

    return router
