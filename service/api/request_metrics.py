"""Request rate, latency and errors of the API, by route template, method and status class.

Labels come from the matched route's template (`/users/{user_id}`), never from the path
itself, so user ids never become label values and the series stay bounded by the
routes; a request no route matched counts under `unmatched`.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.core.labels import PREFIX

REQUESTS = Counter(
    f"{PREFIX}_api_requests_total",
    "HTTP requests answered, by route template, method and status class (2xx, 4xx, 5xx...).",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    f"{PREFIX}_api_request_duration_seconds",
    "Time to answer an HTTP request (to its response start), by route template and method.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestMetrics:
    """Pure ASGI middleware: it wraps `send` to see the status, adds no await per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        answered = False

        async def watch(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start" and not answered:
                answered = True
                _observe(scope, message["status"], time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except BaseException:
            if not answered:  # raised before any response: the server answers 500
                _observe(scope, 500, time.perf_counter() - started)
            raise


def _observe(scope: Scope, status: int, seconds: float) -> None:
    route: Any = scope.get("route")
    template = getattr(route, "path", None) or "unmatched"
    method = scope.get("method", "OTHER")
    method = method if method in _METHODS else "OTHER"
    REQUESTS.labels(template, method, f"{status // 100}xx").inc()
    LATENCY.labels(template, method).observe(seconds)
