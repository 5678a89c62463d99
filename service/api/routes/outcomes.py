"""POST /v1/outcomes/{vendor}: messaging vendors' delivery reports as outcome events.

SendGrid's Event Webhook, Mailgun's webhooks, or any vendor the profile maps under
`outcome_reports`. Authenticated by a write key (the HTTP Basic user name of the URL the
vendor is given: `https://<write key>@host/v1/outcomes/sendgrid`); Mailgun's own
signature is checked too when `LIFECYCLE_MAILGUN_SIGNING_KEY` is set. Each report of a
kind the reminder funnel counts becomes an event with the same guarantees as
`POST /v1/events` (acknowledged after `acks=all`); other kinds are skipped with a 200, so
the vendor does not retry them.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from service.api.collector import Collector, CollectorError, decode_body
from service.api.problems import Problem
from service.api.routes.collect import read_bounded
from service.api.tracking import basic_user, key_matches
from service.core.events import validate_event
from service.core.outcome_reports import ReportError, mailgun_signature_ok, map_reports
from service.settings import Settings

OUTCOMES_PREFIX = "/v1/outcomes/"


class OutcomesResponse(BaseModel):
    accepted: int
    rejected: list[dict[str, Any]]
    skipped: int


def outcome_routes(settings: Settings, collector: Collector) -> APIRouter:
    router = APIRouter(tags=["outcomes"])
    keys = [key.get_secret_value().encode() for key in settings.write_keys if key.get_secret_value()]
    generic = settings.loaded_profile.outcome_reports
    mailgun_key = settings.mailgun_signing_key

    @router.post(
        OUTCOMES_PREFIX + "{vendor}",
        response_model=OutcomesResponse,
        responses={
            400: {"model": Problem, "description": "not JSON, no reports, or an unknown vendor"},
            401: {"model": Problem, "description": "missing or unknown write key"},
            403: {"model": Problem, "description": "a Mailgun signature that does not verify"},
            413: {"model": Problem, "description": "too many reports or too large a body"},
            503: {"model": Problem, "description": "broker unreachable; retry after `Retry-After` s"},
        },
    )
    async def post_outcomes(vendor: str, request: Request) -> Any:
        """A vendor's delivery reports; a 2xx means the outcome events are durable in Kafka."""
        if not key_matches(basic_user(request.headers.get("authorization", "")), keys):
            return JSONResponse(
                {"detail": "missing or unknown write key"},
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="outcomes"'},
            )
        body = await read_bounded(request, settings.collector_max_bytes)
        if body is None:
            return JSONResponse({"detail": "request body too large"}, status_code=413)
        now = int(time.time() * 1000)
        try:
            raw = decode_body(body, request.headers.get("content-encoding"), settings.collector_max_bytes)
            try:
                doc = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise CollectorError(400, f"body is not JSON: {exc}") from exc
            signing = mailgun_key.get_secret_value().encode() if mailgun_key is not None else None
            if vendor == "mailgun" and signing is not None and not mailgun_signature_ok(doc, signing):
                return JSONResponse({"detail": "the Mailgun signature does not verify"}, status_code=403)
            try:
                mapped = map_reports(vendor, doc, received_ms=now, generic=generic)
            except ReportError as exc:
                status = 413 if "at most" in str(exc) else 400
                raise CollectorError(status, str(exc)) from exc
            bounds = settings.time_bounds(now)
            accepted: list[tuple[str, bytes]] = []
            rejected = list(mapped.rejected)
            for event in mapped.events:
                checked = validate_event(event, bounds)
                if isinstance(checked, str):
                    rejected.append({"event_id": event["event_id"], "reason": checked})
                else:
                    accepted.append((checked.user_id, orjson.dumps(checked.to_json())))
            result = await collector.send(accepted, rejected) if accepted else None
        except CollectorError as exc:
            headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
            return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=headers)
        return {
            "accepted": result.accepted if result else 0,
            "rejected": result.rejected if result else rejected,
            "skipped": mapped.skipped,
        }

    return router
