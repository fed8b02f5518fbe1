"""Prometheus metrics of one gateway app, in its own registry (never the process-global one)."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class GatewayMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # process_* (CPU, memory, open fds), python_info, python_gc_*: as the worker's.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.commands = Counter(
            "parley_gateway_commands_total",
            "Commands handled by the gateway, by type and outcome code (ok or an error code)",
            ["type", "code"],
            registry=self.registry,
        )
        self.command_latency = Histogram(
            "parley_gateway_command_latency_seconds",
            "Time from receiving a command to its ack",
            ["type"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.socket_events = Counter(
            "parley_gateway_socket_events_total",
            "Socket.IO client events (commands, queries, typing, unknown), by event and outcome code",
            ["event", "code"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "parley_gateway_rate_limited_total",
            "Calls refused for being over a rate limit, by operation class",
            ["operation"],
            registry=self.registry,
        )
        self.connected_sockets = Gauge(
            "parley_gateway_connected_sockets",
            "Authenticated Socket.IO connections on this gateway",
            registry=self.registry,
        )
        self.http_requests = Counter(
            "parley_gateway_http_requests_total",
            "HTTP requests by method, route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "parley_gateway_http_request_duration_seconds",
            "HTTP request duration by method and route",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

    def observe_command(self, command_type: str, code: str, seconds: float) -> None:
        self.commands.labels(type=command_type, code=code).inc()
        self.command_latency.labels(type=command_type).observe(seconds)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
