"""ASGI middleware of the HTTP app: correlation ids and request metrics."""

from __future__ import annotations

import time

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.http.correlation import HEADER, correlation_id_or_new
from api.metrics import GatewayMetrics
from infra.logging import correlation_id_var

_HEADER_KEY = HEADER.lower().encode("latin-1")


class CorrelationMiddleware:
    """Keeps a valid ``X-Correlation-ID`` (else makes one), sets it for logs, echoes it back,
    and counts the request by method, route template and status."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        supplied = next((v for k, v in scope.get("headers", []) if k == _HEADER_KEY), None)
        cid = correlation_id_or_new(supplied.decode("latin-1") if supplied is not None else None)
        token = correlation_id_var.set(cid)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableHeaders(scope=message)[HEADER] = cid
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            template = str(getattr(route, "path", "unmatched"))
            method = str(scope.get("method", "GET"))
            self.metrics.http_requests.labels(method=method, route=template, status=str(status)).inc()
            elapsed = time.perf_counter() - started
            self.metrics.http_latency.labels(method=method, route=template).observe(elapsed)
            correlation_id_var.reset(token)
