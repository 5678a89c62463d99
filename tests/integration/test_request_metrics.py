"""The API's request metrics are labelled by route template, never by a user id."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.api.app import create_api
from tests.stack import Stack

pytestmark = pytest.mark.integration


def _requests(body: str) -> dict[tuple[str, str, str], float]:
    out = {}
    for family in text_string_to_metric_families(body):
        if family.name == "lifecycle_api_requests":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    labels = sample.labels
                    out[(labels["route"], labels["method"], labels["status"])] = sample.value
    return out


async def test_requests_are_counted_by_route_template_method_and_status_class(stack: Stack) -> None:
    app = create_api(stack.settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api") as api:
        before = _requests((await api.get("/metrics")).text)
        for uid in ("alice", "bob", "carol"):
            assert (await api.get(f"/users/{uid}")).status_code == 404
        assert (await api.get("/lifecycle")).status_code == 200
        assert (await api.get("/no/such/path")).status_code == 404
        after = _requests((await api.get("/metrics")).text)
    grown = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}
    user_route = [k for k in grown if k[0].startswith("/users/{user_id")]
    assert len(user_route) == 1 and grown[user_route[0]] == 3 and user_route[0][1:] == ("GET", "4xx")
    assert grown[("/lifecycle", "GET", "2xx")] == 1
    assert grown[("unmatched", "GET", "4xx")] == 1
    assert not any(uid in str(k) for k in after for uid in ("alice", "bob", "carol"))
    latency = (await _metrics_text(app)).count(
        'lifecycle_api_request_duration_seconds_bucket{le="0.005",method="GET",route="/lifecycle"}'
    )
    assert latency == 1


async def _metrics_text(app: object) -> str:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api") as api:  # type: ignore[arg-type]
        return (await api.get("/metrics")).text
