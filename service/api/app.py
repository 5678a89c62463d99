"""The HTTP API (FastAPI): current state from Redis, health, readiness and /metrics.

Handlers are thin: validation of the inputs, one `Queries` call, the response model.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import date
from typing import Annotated, Any

from aiokafka import AIOKafkaClient
from fastapi import FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from redis.exceptions import RedisError
from starlette.convertors import Convertor, register_url_convertor

from service.api.audiences import audience_routes, cursor_key
from service.api.collector import Collector, CollectorError
from service.api.console import console_routes, is_console_path, serve_console
from service.api.history import History
from service.api.ops import EndOffsets, Ops
from service.api.population import PopulationMetrics
from service.api.problems import Problem, ValidationProblem
from service.core.durations import DurationError, format_duration, parse_duration
from service.core.events import MAX_AMOUNT, MAX_ID_LEN, MAX_TS_MS, MIN_TS_MS
from service.core.profile import Thresholds
from service.kafka.options import aiokafka_options
from service.settings import Settings
from service.storage.audiences import AudienceReader
from service.storage.client import AnyRedis, discover, redis_client
from service.storage.queries import Queries


class _UserIdConvertor(Convertor[str]):
    """A path segment that is any user id: "/" (sent as %2F, decoded before routing) and
    newlines included, which Starlette's `str` and `path` convertors do not match."""

    regex = r"[\s\S]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("user_id", _UserIdConvertor())

ChannelParam = Annotated[
    str | None,
    Query(max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$", description="acquisition channel; '-' for none"),
]


DurationParam = Annotated[
    str | None, Query(max_length=16, pattern=r"^\d+(\.\d+)?(ms|s|m|h|d|w)$", description="e.g. 30d, 12h")
]


class StateCounts(BaseModel):
    new: int
    retained: int
    silent: int
    churned: int
    dead: int


class Lifecycle(BaseModel):
    as_of: int
    channel: str | None
    total: int
    counts: StateCounts


class WhatIf(Lifecycle):
    thresholds: dict[str, str]


class CurvePointOut(BaseModel):
    idle: str
    idle_ms: int
    returns_after: int
    still_idle: int
    return_probability: float | None


class ReturnCurve(BaseModel):
    as_of: int
    channel: str | None
    points: list[CurvePointOut]


class FunnelStageOut(BaseModel):
    name: str
    event: str
    nth: int
    users: int
    conversion_from_previous: float | None
    conversion_from_first: float | None


class Funnel(BaseModel):
    channel: str | None
    stages: list[FunnelStageOut]


class User(BaseModel):
    user_id: str
    state: str
    rfm_segment: str
    as_of: int
    first_seen: int
    last_active: int
    channel: str | None
    funnel_stage: str | None
    funnel_stage_index: int
    orders: int
    revenue: float
    event_counts: dict[str, int]


class RejectedEvent(BaseModel):
    index: int
    reason: str


class CollectResponse(BaseModel):
    accepted: int
    rejected: list[RejectedEvent]


class CollectRefused(Problem):
    """A 400 from the collector: not JSON (`detail` only), or every event rejected (by index)."""

    accepted: int = 0
    rejected: list[RejectedEvent] = Field(default_factory=list)


_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["event_id", "user_id", "type", "ts"],
    "additionalProperties": False,
    "properties": {
        "event_id": {"type": "string", "minLength": 1, "maxLength": 128},
        "user_id": {"type": "string", "minLength": 1, "maxLength": 128},
        "type": {"type": "string", "pattern": "^[A-Za-z0-9_.\\-]{1,64}$"},
        "ts": {
            "oneOf": [
                {"type": "string", "format": "date-time", "maxLength": 40},
                {"type": "integer", "minimum": MIN_TS_MS, "maximum": MAX_TS_MS},
            ],
            "description": "event time; also at most LIFECYCLE_MAX_FUTURE past the server's clock",
        },
        "channel": {"type": "string", "pattern": "^[A-Za-z0-9_.\\-]{1,64}$", "not": {"const": "-"}},
        "amount": {"type": "number", "minimum": -MAX_AMOUNT, "maximum": MAX_AMOUNT},
        "properties": {"type": "object"},
    },
}


class Health(BaseModel):
    status: str
    checks: dict[str, str] = {}


def _day(text: str) -> int:
    """Days since the epoch of an ISO date."""
    return (date.fromisoformat(text) - date(1970, 1, 1)).days


class _KafkaProbe:
    """Answers whether the brokers respond to a metadata request, cached for two seconds."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        self._at = 0.0
        self._ok = False
        self._error = ""

    async def check(self) -> tuple[bool, str]:
        if time.monotonic() - self._at < 2.0:
            return self._ok, self._error
        client = AIOKafkaClient(**self.options, request_timeout_ms=2000)
        try:
            await asyncio.wait_for(client.bootstrap(), 3)
            self._ok, self._error = True, ""
        except Exception as exc:  # any failure means "not ready"; the reason is reported
            self._ok, self._error = False, f"{type(exc).__name__}: {exc}"[:200]
        finally:
            await client.close()
        self._at = time.monotonic()
        return self._ok, self._error


async def _read_bounded(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it exceeds `limit` bytes: a chunked upload without a
    Content-Length is never read into memory past the limit."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


REPEATABLE_PARAMETERS = frozenset({"state"})  # the audiences' list parameter: ?state=silent&state=dead


def _refuse_repeated_parameters(app: FastAPI) -> None:
    """Every query parameter but a declared list is a single value: `?channel=a&channel=b`
    is refused (422, in FastAPI's validation error shape) instead of silently taking the
    last one."""

    @app.middleware("http")
    async def check_query(request: Request, call_next: Any) -> Any:
        names = [name for name, _ in request.query_params.multi_items() if name not in REPEATABLE_PARAMETERS]
        if len(names) != len(set(names)):
            repeated = sorted({n for n in names if names.count(n) > 1})
            errors = [
                {"loc": ["query", name[:64]], "msg": "given more than once", "type": "repeated"}
                for name in repeated[:10]
            ]
            return JSONResponse({"detail": errors}, status_code=422)
        return await call_next(request)


OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})  # probes and scrapes: no key


def _require_api_key(app: FastAPI, key: str) -> None:
    """`Authorization: Bearer <key>` or `X-API-Key: <key>` on everything but the open paths,
    compared in constant time; declared in the OpenAPI document so clients know."""
    expected = key.encode()

    @app.middleware("http")
    async def check_key(request: Request, call_next: Any) -> Any:
        if request.url.path in OPEN_PATHS or is_console_path(request.url.path):
            return await call_next(request)
        given = request.headers.get("x-api-key", "")
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            given = auth[7:]
        if not hmac.compare_digest(given.encode(), expected):
            return JSONResponse(
                {"detail": "missing or wrong API key"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return await call_next(request)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            }
            for path, ops in schema["paths"].items():
                if path not in OPEN_PATHS:
                    for op in ops.values():
                        op["security"] = [{"bearer": []}, {"apiKey": []}]
                        op.setdefault("responses", {})["401"] = {"description": "missing or wrong API key"}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_api(settings: Settings, redis: AnyRedis | None = None) -> FastAPI:
    profile = settings.loaded_profile
    client = redis or redis_client(settings, socket_timeout=5, socket_connect_timeout=2)
    queries = Queries(client, settings.key_prefix, settings.partitions, profile, settings.clock)
    kafka_options = aiokafka_options(settings)
    kafka = _KafkaProbe(kafka_options)
    collector = Collector(settings)
    audiences = AudienceReader(queries, cursor_key(settings))
    population = PopulationMetrics(queries, settings, audiences)
    history = History(queries, settings.history_interval)
    ops = Ops(queries, EndOffsets(kafka_options, settings.events_topic, settings.partitions))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await discover(client)
        recorder = asyncio.create_task(history.run())
        lease = asyncio.create_task(population.lease.keep())
        yield
        for task in (recorder, lease):
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        with suppress(RedisError, OSError):
            await population.lease.release()  # a graceful stop hands the export over at once
        await ops.ends.close()
        await collector.close()
        await client.aclose()

    app = FastAPI(
        title="Lifecycle operations API",
        version="0.1.0",
        description=f"Users' lifecycle stages and the core path funnel (profile `{profile.name}`).",
        lifespan=lifespan,
    )
    app.state.queries = queries
    app.state.collector = collector
    app.state.history = history
    _refuse_repeated_parameters(app)
    if settings.api_key is not None:
        _require_api_key(app, settings.api_key.get_secret_value())
    app.include_router(audience_routes(audiences))
    app.include_router(console_routes(history, ops))

    # `:user_id`: any characters (see `_UserIdConvertor`); the triggers route comes first,
    # so only an id ending in "/triggers" is ambiguous.
    @app.get("/users/{user_id:user_id}/triggers", responses={404: {"description": "unknown user"}})
    async def get_user_triggers(
        user_id: Annotated[str, Path(min_length=1, max_length=MAX_ID_LEN)],
    ) -> dict[str, Any]:
        """A user's scheduled triggers (due times, epoch ms) and the last fired ones with outcomes."""
        found = await queries.user_triggers(user_id)
        if found is None:
            raise HTTPException(404, f"no user {user_id!r}")
        return found

    @app.get(
        "/users/{user_id:user_id}", response_model=User, responses={404: {"description": "unknown user"}}
    )
    async def get_user(user_id: Annotated[str, Path(min_length=1, max_length=MAX_ID_LEN)]) -> dict[str, Any]:
        """A user's lifecycle state at the current clock, funnel stage, orders and revenue."""
        found = await queries.user(user_id)
        if found is None:
            raise HTTPException(404, f"no user {user_id!r}")
        return found

    @app.get("/triggers/summary")
    async def get_trigger_summary(channel: ChannelParam = None) -> dict[str, Any]:
        """Per trigger type and channel: sent, held out, capped, suppressed, cancelled, deferred;
        delivered, click-through, payment click and payment rates; recall success and conversion
        for the treated and the holdout group, and the uplift between them."""
        return await queries.trigger_summary(channel)

    @app.get("/lifecycle", response_model=Lifecycle)
    async def get_lifecycle(channel: ChannelParam = None) -> dict[str, Any]:
        """Exact number of users in each lifecycle state at the current clock."""
        return await queries.lifecycle(channel)

    @app.get("/lifecycle/return-curve", response_model=ReturnCurve)
    async def get_return_curve(channel: ChannelParam = None) -> dict[str, Any]:
        """For each idle time d (1 hour to 2 years, log-spaced): returns after a gap >= d, users
        idle >= d now (censored: they may still return), and the estimated probability that a
        user idle for d comes back. Exact at the boundaries."""
        return await queries.return_curve(channel)

    @app.get(
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
        if not th.new_window <= th.silent_after < th.churn_after < th.dead_after:
            detail = "need new_window <= silent_after < churn_after < dead_after"
            return JSONResponse({"detail": detail}, status_code=422)
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

    @app.get("/retention", responses={422: {"model": Problem | ValidationProblem}})
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
        d+N for each N of the profile's `retention_days` (default 1, 7, 30), with rates."""
        try:
            if cohort:
                first = last = _day(cohort)
            elif start and end:
                first, last = _day(start), _day(end)
            else:
                return JSONResponse({"detail": "give cohort=YYYY-MM-DD, or from= and to="}, status_code=422)
        except ValueError:
            return JSONResponse({"detail": "dates must be YYYY-MM-DD"}, status_code=422)
        if not 0 <= last - first <= 366:
            return JSONResponse({"detail": "a range is from <= to, at most 366 days"}, status_code=422)
        return await queries.retention(first, last, channel)

    @app.get("/indicators")
    async def get_indicators(channel: ChannelParam = None) -> dict[str, Any]:
        """The process indicators at the current clock, in one document: users; daily, weekly and
        monthly active users (last activity within 1, 7, 30 days) and activity rates; registrations,
        paying users and payment rate (payers / registered); orders, GMV, average order value,
        revenue per user; users per lifecycle state; the funnel; and, without `channel`, the same
        per channel."""
        return await queries.indicators(channel)

    @app.get("/funnel", response_model=Funnel)
    async def get_funnel(channel: ChannelParam = None) -> dict[str, Any]:
        """Users who reached each core-path stage (monotone), with stage-to-stage conversion."""
        return await queries.funnel(channel)

    @app.post(
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
                                _EVENT_SCHEMA,
                                {
                                    "type": "array",
                                    "items": _EVENT_SCHEMA,
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
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > settings.collector_max_bytes:
            return JSONResponse({"detail": "request body too large"}, status_code=413)
        body = await _read_bounded(request, settings.collector_max_bytes)
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

    @app.get("/healthz", response_model=Health)
    async def healthz() -> dict[str, Any]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/readyz", response_model=Health, responses={503: {"model": Health}})
    async def readyz(response: Response) -> dict[str, Any]:
        """Redis and Kafka both answer; 503 otherwise, with the failing check named."""
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(client.ping(), 2)
            checks["redis"] = "ok"
        except Exception as exc:  # any failure means "not ready"
            checks["redis"] = f"{type(exc).__name__}: {exc}"[:200]
        ok, error = await kafka.check()
        checks["kafka"] = "ok" if ok else error
        ready = all(v == "ok" for v in checks.values())
        if not ready:
            response.status_code = 503
        return {"status": "ready" if ready else "unavailable", "checks": checks}

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        """Process metrics, plus the store's populations read now (see `service.api.population`)."""
        body = generate_latest()
        with suppress(RedisError, OSError):  # Redis away: serve what the process knows; /readyz says why
            body += await population.scrape()
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    serve_console(app)
    return app
