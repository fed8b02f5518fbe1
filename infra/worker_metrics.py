"""Prometheus metrics of one worker process, in its own registry, served on the worker's metrics port.

The worker is a process of its own (no HTTP app), so it serves ``GET /metrics`` itself from a
daemon thread (prometheus_client's WSGI server) on ``Settings.host:Settings.worker_metrics_port``.
The names below are the contract of the dashboard (infra/observability/grafana); a unit test checks
that every name the dashboard uses is one of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

_BATCH_SIZES = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000)
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class LagSample:
    """How far one projection is behind the log on one partition of one source topic."""

    projection: str
    topic: str
    partition: int
    position: int  # the next offset the projection will apply
    end: int  # the offset the next record will get

    @property
    def lag(self) -> int:
        return max(0, self.end - self.position)


def dead_letter_kind(reason: str) -> str:
    """A small, fixed label for a parking reason (the reason itself is free text, in the record's headers).

    ``undecodable``: no reader can decode the record; ``upcast``: its event has no upcaster to today's
    schema; ``poison``: a well-formed event that a projection kept failing on."""
    head = reason.split(":", 1)[0].strip()
    return head if head in ("undecodable", "upcast") else "poison"


class WorkerMetrics:
    """The worker's series; the Faust agents report into it (see ``streams.app.Metrics``)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # process_* (CPU, memory, open fds, start time), python_info, python_gc_*.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.decide_batch_size = Histogram(
            "parley_worker_decide_batch_size",
            "Commands per batch the decide agent decided",
            buckets=_BATCH_SIZES,
            registry=self.registry,
        )
        self.decide_batch_seconds = Histogram(
            "parley_worker_decide_batch_seconds",
            "Time to decide, append, save and answer one batch of commands",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.commands_decided = Counter(
            "parley_worker_commands_decided_total",
            "Commands decided, by outcome (ok or refused)",
            ["outcome"],
            registry=self.registry,
        )
        self.commands_fenced = Counter(
            "parley_worker_commands_fenced_total",
            "Commands let go undecided or unsaved because this worker had lost its partitions (streams/membership.py)",
            registry=self.registry,
        )
        self.project_batch_size = Histogram(
            "parley_worker_project_batch_size",
            "Records per batch a projection agent applied, by agent (project, trail-rejections, trail-refusals)",
            ["agent"],
            buckets=_BATCH_SIZES,
            registry=self.registry,
        )
        self.project_batch_seconds = Histogram(
            "parley_worker_project_batch_seconds",
            "Time to apply one batch to the read models, the audit trail and pushes, by agent",
            ["agent"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "parley_worker_dead_letters_total",
            "Records parked in the dead-letter topic, by source topic and kind (undecodable, upcast, poison)",
            ["source_topic", "kind"],
            registry=self.registry,
        )
        self.rebalances = Counter(
            "parley_worker_rebalances_total",
            "Consumer group rebalances this worker took part in (the first join counts as one)",
            registry=self.registry,
        )
        self.rebalancing = Gauge(
            "parley_worker_rebalancing",
            "1 while a rebalance (including table recovery) is under way on this worker, else 0",
            registry=self.registry,
        )
        self.rebalance_seconds = Histogram(
            "parley_worker_rebalance_seconds",
            "Duration of a rebalance, from the revocation to the end of table recovery",
            buckets=(0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
            registry=self.registry,
        )
        self.assigned_partitions = Gauge(
            "parley_worker_assigned_partitions",
            "Partitions assigned to this worker, by topic",
            ["topic"],
            registry=self.registry,
        )
        self.lag = _LagCollector()
        self.registry.register(self.lag)

    # The agents' side (streams.app.Metrics) ---------------------------------------------------
    def observe_decide(self, size: int, ok: int, refused: int, seconds: float) -> None:
        self.decide_batch_size.observe(size)
        self.decide_batch_seconds.observe(seconds)
        if ok:
            self.commands_decided.labels(outcome="ok").inc(ok)
        if refused:
            self.commands_decided.labels(outcome="refused").inc(refused)

    def fenced(self, count: int) -> None:
        self.commands_fenced.inc(count)

    def observe_project(self, agent: str, size: int, seconds: float) -> None:
        self.project_batch_size.labels(agent=agent).observe(size)
        self.project_batch_seconds.labels(agent=agent).observe(seconds)

    def dead_lettered(self, source_topic: str, reason: str) -> None:
        self.dead_letters.labels(source_topic=source_topic, kind=dead_letter_kind(reason)).inc()

    def rebalance_started(self) -> None:
        self.rebalances.inc()
        self.rebalancing.set(1)

    def rebalance_ended(self, seconds: float) -> None:
        self.rebalancing.set(0)
        self.rebalance_seconds.observe(seconds)

    def set_assignment(self, partitions_by_topic: dict[str, int]) -> None:
        self.assigned_partitions.clear()
        for topic, count in partitions_by_topic.items():
            self.assigned_partitions.labels(topic=topic).set(count)

    def set_lag(self, samples: Iterable[LagSample], at: float) -> None:
        """Replace every lag series at once: a partition this worker no longer holds drops out."""
        self.lag.replace(tuple(samples), at)

    # Exposition -------------------------------------------------------------------------------
    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))

    def metric_names(self) -> set[str]:
        return series_names(self.registry)

    def serve(self, host: str, port: int) -> Any:
        """Serve GET /metrics from a daemon thread; returns the server (``shutdown()`` stops it).
        Raises OSError when the port cannot be bound."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server


def series_names(registry: CollectorRegistry) -> set[str]:
    """Every series name a registry can expose, with the suffixes of its type (_total, _bucket...)."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("_sum", "_count", "_created"),
        "info": ("_info",),
    }
    names: set[str] = set()
    for family in registry.collect():
        names.add(family.name)
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ()))
    return names


class _LagCollector:
    """The lag series of the last measurement, swapped whole (a scrape never sees half of one)."""

    def __init__(self) -> None:
        self._samples: tuple[LagSample, ...] = ()
        self._at = 0.0

    def replace(self, samples: tuple[LagSample, ...], at: float) -> None:
        self._samples, self._at = samples, at

    def collect(self) -> Iterator[Metric]:
        samples, at = self._samples, self._at
        lag = GaugeMetricFamily(
            "parley_worker_projection_lag_records",
            "Records of the log a projection has not applied yet, per projection, source topic and partition "
            "(only the partitions assigned to this worker: sum over workers for the whole)",
            labels=["projection", "topic", "partition"],
        )
        for s in samples:
            lag.add_metric([s.projection, s.topic, str(s.partition)], s.lag)
        yield lag
        yield GaugeMetricFamily(
            "parley_worker_projection_lag_sampled_timestamp_seconds",
            "When the projection lag was last measured (Unix time; 0: not yet)",
            value=at,
        )
