"""Prometheus metrics (prometheus-client): per-route request counts and latency for every service,
plus each service's own counters and gauges, served at ``GET /metrics``.

With several uvicorn workers (the user app's ``WORKERS``) each worker is a process with its own
registry, so ``python -m user_app`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory and
``/metrics`` aggregates every worker's files (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import os
import time
from typing import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess,
)
from starlette.requests import Request
from starlette.responses import Response

from shared.logs import RequestIdMiddleware

# Buckets from 0.5 ms to 10 s: chunk RPCs sit at the low end, large transfers at the top.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

HTTP_REQUESTS = Counter("ringfs_http_requests_total", "HTTP requests handled",
                        ["service", "method", "route", "status"])
HTTP_LATENCY = Histogram("ringfs_http_request_duration_seconds", "Time to the end of the response, seconds",
                         ["service", "method", "route"], buckets=LATENCY_BUCKETS)


def multiprocess_mode() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
    """A gauge that sums across worker processes in multiprocess mode."""
    return Gauge(name, doc, labels, multiprocess_mode="livesum")


class MetricsMiddleware:
    """Pure ASGI middleware timing each request by its route template (``/files/{path:path}``, never
    the concrete path, so label cardinality stays bounded)."""

    def __init__(self, app, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = {"code": 500}

        async def send_status(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            HTTP_REQUESTS.labels(self.service, scope["method"], route, str(status["code"])).inc()
            HTTP_LATENCY.labels(self.service, scope["method"], route).observe(time.perf_counter() - start)


def metrics_endpoint(refresh: Callable[[], None] | None = None):
    """A ``GET /metrics`` handler; ``refresh`` updates gauges that are read on demand."""

    async def handle_metrics(request: Request) -> Response:
        if refresh is not None:
            result = refresh()
            if hasattr(result, "__await__"):
                await result
        if multiprocess_mode():
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            body = generate_latest(registry)
        else:
            body = generate_latest()
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return handle_metrics


def install_metrics(app, service: str, refresh: Callable[[], object] | None = None) -> None:
    """Add the timing and request-id middlewares and the ``/metrics`` route to a FastAPI ``app``."""
    app.add_middleware(MetricsMiddleware, service=service)
    app.add_middleware(RequestIdMiddleware)
    app.add_route("/metrics", metrics_endpoint(refresh), methods=["GET"], include_in_schema=False)
