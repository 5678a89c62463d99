"""The API's own contract: readiness follows its dependencies, inputs are bounded."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from service.api.app import create_api
from service.dev.processes import free_port
from service.settings import Settings
from tests.stack import Stack

pytestmark = pytest.mark.integration


def _client(settings: Settings) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(create_api(settings)), base_url="http://api")


async def test_ready_when_redis_and_kafka_answer(broker: Any, redis_url: str) -> None:
    async with _client(Settings(kafka_bootstrap=broker.bootstrap, redis_url=redis_url)) as api:
        ready = await api.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "checks": {"redis": "ok", "kafka": "ok"}}
        assert (await api.get("/healthz")).json() == {"status": "ok", "checks": {}}


async def test_not_ready_names_the_dependency_that_is_down(broker: Any, redis_url: str) -> None:
    dead = f"127.0.0.1:{free_port()}"
    async with _client(Settings(kafka_bootstrap=broker.bootstrap, redis_url=f"redis://{dead}/0")) as api:
        body = (await api.get("/readyz")).json()
        assert (await api.get("/readyz")).status_code == 503
        assert body["checks"]["kafka"] == "ok" and body["checks"]["redis"] != "ok"
        assert (await api.get("/healthz")).status_code == 200
    async with _client(Settings(kafka_bootstrap=dead, redis_url=redis_url)) as api:
        response = await api.get("/readyz")
        assert response.status_code == 503
        assert response.json()["checks"]["redis"] == "ok" and response.json()["checks"]["kafka"] != "ok"


async def test_empty_store_and_bounded_inputs(broker: Any, redis_url: str) -> None:
    async with _client(Settings(kafka_bootstrap=broker.bootstrap, redis_url=redis_url)) as api:
        body = (await api.get("/lifecycle")).json()
        assert body["total"] == 0 and set(body["counts"].values()) == {0}
        stages = (await api.get("/funnel")).json()["stages"]
        assert [s["users"] for s in stages] == [0] * len(stages)
        assert (await api.get("/users/" + "x" * 129)).status_code == 422
        assert (await api.get("/lifecycle", params={"channel": "bad channel!"})).status_code == 422
        assert (await api.get("/users/a%7Bb%7D%3Ac%20d")).status_code == 404  # `{b}:c d` is just a name
        assert (await api.get("/openapi.json")).json()["paths"].keys() >= {"/users/{user_id}", "/lifecycle"}
        repeated = await api.get("/lifecycle?channel=a&channel=b")
        assert repeated.status_code == 422 and repeated.json()["detail"][0]["loc"] == ["query", "channel"]
        listed = await api.get("/audiences/users?state=silent&state=dead")  # a declared list parameter
        assert listed.status_code == 200 and listed.json()["users"] == []


async def test_api_key_guards_everything_but_probes_and_metrics(stack: Stack) -> None:
    settings = stack.settings.model_copy(update={"api_key": SecretStr("s3cret-key")})
    app = create_api(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api") as api:
        paths = ("/lifecycle", "/funnel", "/users/u1", "/triggers/summary", "/docs", "/openapi.json")
        for path in (*paths, "/audiences", "/audiences/users", "/audiences/silent_this_week/users"):
            denied = await api.get(path)
            assert denied.status_code == 401, path
            assert denied.headers["www-authenticate"] == "Bearer"
            assert (await api.get(path, headers={"X-API-Key": "wrong"})).status_code == 401
        assert (
            await api.get("/lifecycle", headers={"Authorization": "Bearer s3cret-key"})
        ).status_code == 200
        assert (await api.get("/lifecycle", headers={"X-API-Key": "s3cret-key"})).status_code == 200
        assert (await api.post("/v1/events", content=b"[]")).status_code == 401
        for path in ("/healthz", "/metrics"):
            assert (await api.get(path)).status_code == 200, path
        assert (await api.get("/readyz")).status_code in (200, 503)
        schema = (await api.get("/openapi.json", headers={"X-API-Key": "s3cret-key"})).json()
        assert set(schema["components"]["securitySchemes"]) == {"bearer", "apiKey"}
        assert schema["paths"]["/lifecycle"]["get"]["security"]
        assert "security" not in schema["paths"]["/healthz"]["get"]
    assert "s3cret-key" not in repr(settings) and "s3cret-key" not in str(settings.model_dump())
