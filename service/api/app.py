"""The HTTP API (FastAPI): current state from Redis, health, readiness and /metrics.

This module wires it: settings, clients, the middleware every request passes (repeated
parameters refused, the API key), the lifespan, and the routers of `service.api.routes`,
one per resource. Handlers are thin: validation of the inputs, one `Queries` call, the
response model.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.audiences import audience_routes, cursor_key
from service.api.collector import Collector
from service.api.console import console_routes, is_console_path, serve_console
from service.api.history import History
from service.api.ops import EndOffsets, Ops
from service.api.population import PopulationMetrics
from service.api.request_metrics import RequestMetrics
from service.api.routes.collect import collect_routes
from service.api.routes.erasure import admin_refusal, erasure_routes, is_admin_request
from service.api.routes.funnel import funnel_routes
from service.api.routes.health import KafkaProbe, health_routes
from service.api.routes.indicators import indicator_routes
from service.api.routes.lifecycle import lifecycle_routes
from service.api.routes.outcomes import OUTCOMES_PREFIX, outcome_routes
from service.api.routes.tracking import TRACKING_PATHS, tracking_routes
from service.api.routes.triggers import trigger_routes
from service.api.routes.users import user_routes
from service.api.tracking import basic_user, key_matches
from service.kafka.options import aiokafka_options
from service.settings import Settings
from service.storage.audiences import AudienceReader
from service.storage.client import AnyRedis, discover, redis_client
from service.storage.queries import Queries

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


class TrackingCors:
    """Starlette's CORS middleware on the tracking paths only: browser SDKs post events
    cross-origin, while the read API stays same-origin."""

    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_methods=["POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Content-Encoding"],
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in TRACKING_PATHS:
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def _takes_write_keys(path: str) -> bool:
    """The paths a write key may post to (and that the API key does not guard)."""
    return path in TRACKING_PATHS or path.startswith(OUTCOMES_PREFIX)


def _refuse_write_keys(app: FastAPI, write_keys: list[bytes]) -> None:
    """A write key only writes: presented to any endpoint but the tracking API (as Basic
    user, bearer or X-API-Key) it is a 403, whatever the API key setting."""

    @app.middleware("http")
    async def check_write_key(request: Request, call_next: Any) -> Any:
        if not _takes_write_keys(request.url.path):
            auth = request.headers.get("authorization", "")
            candidates = [basic_user(auth), request.headers.get("x-api-key")]
            if auth[:7].lower() == "bearer ":
                candidates.append(auth[7:])
            if any(key_matches(c, write_keys) for c in candidates):
                return JSONResponse(
                    {"detail": "a write key may only write to the tracking API and the outcome reports"}, 403
                )
        return await call_next(request)


def _guard_admin(app: FastAPI, key: str | None) -> None:
    """The erasure endpoints take the admin key alone, checked before their parameters."""

    @app.middleware("http")
    async def check_admin_key(request: Request, call_next: Any) -> Any:
        if is_admin_request(request.method, request.url.path):
            refusal = admin_refusal(request, key)
            if refusal is not None:
                return refusal
        return await call_next(request)


def _require_api_key(app: FastAPI, key: str) -> None:
    """`Authorization: Bearer <key>` or `X-API-Key: <key>` on everything but the open paths
    and the tracking API (which has its write keys), compared in constant time; declared in
    the OpenAPI document so clients know."""
    expected = key.encode()

    @app.middleware("http")
    async def check_key(request: Request, call_next: Any) -> Any:
        path = request.url.path
        if path in OPEN_PATHS or _takes_write_keys(path) or is_console_path(path):
            return await call_next(request)
        if is_admin_request(request.method, path):
            return await call_next(request)  # the admin key (`_guard_admin`)
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
                if path not in OPEN_PATHS and not _takes_write_keys(path):
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
    kafka = KafkaProbe(kafka_options)
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
    _guard_admin(app, settings.admin_key.get_secret_value() if settings.admin_key is not None else None)
    if settings.api_key is not None:
        _require_api_key(app, settings.api_key.get_secret_value())
    write_keys = [k.get_secret_value().encode() for k in settings.write_keys if k.get_secret_value()]
    if write_keys:
        _refuse_write_keys(app, write_keys)
    # The order is the routing precedence and the OpenAPI document's order.
    app.include_router(audience_routes(audiences))
    app.include_router(console_routes(history, ops))
    app.include_router(erasure_routes(settings, client, collector))
    app.include_router(user_routes(queries))
    app.include_router(trigger_routes(queries))
    app.include_router(lifecycle_routes(queries, profile, settings))
    app.include_router(indicator_routes(queries))
    app.include_router(funnel_routes(queries))
    app.include_router(collect_routes(settings, collector))
    app.include_router(tracking_routes(settings, collector))
    app.include_router(outcome_routes(settings, collector))
    app.include_router(health_routes(client, kafka, population))
    serve_console(app)
    if settings.cors_origins:
        app.add_middleware(TrackingCors, origins=settings.cors_origins)
    app.add_middleware(RequestMetrics)
    return app
