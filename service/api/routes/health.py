"""Liveness, readiness (Redis and Kafka answer) and the Prometheus scrape."""

from __future__ import annotations

import asyncio
import time
from contextlib import suppress
from typing import Any

from aiokafka import AIOKafkaClient
from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from service.api.models import Health
from service.api.population import PopulationMetrics
from service.storage.client import AnyRedis


class KafkaProbe:
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


def health_routes(client: AnyRedis, kafka: KafkaProbe, population: PopulationMetrics) -> APIRouter:
    router = APIRouter()

    @router.get("/healthz", response_model=Health)
    async def healthz() -> dict[str, Any]:
        """The process is alive."""
        return {"status": "ok"}

    @router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
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

    @router.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        """Process metrics, plus the store's populations read now (see `service.api.population`)."""
        body = generate_latest()
        with suppress(RedisError, OSError):  # Redis away: serve what the process knows; /readyz says why
            body += await population.scrape()
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return router
