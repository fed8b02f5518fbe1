"""The worker's Prometheus series, scraped from the metrics port `parley up` gave it, move with real traffic."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from infra.localstack.datadir import DataDir
from infra.localstack.runfile import read_run_info
from infra.rebuild import projection_names
from tests.conftest import Platform
from tests.e2e.conftest import Users

pytestmark = pytest.mark.e2e

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]
WAIT_S = 40.0  # the lag is measured every 10 s


def metrics_url(platform: Platform) -> str:
    port = platform.settings.worker_metrics_port
    assert port, "parley up gave the worker no metrics port"
    return f"http://127.0.0.1:{port}/metrics"


async def scrape(url: str) -> Series:
    async with httpx.AsyncClient(timeout=5) as http:
        resp = await http.get(url)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    out: Series = {}
    for family in text_string_to_metric_families(resp.text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(series: Series, name: str, **labels: str) -> float:
    return series.get((name, frozenset(labels.items())), 0.0)


async def until(url: str, holds: Callable[[Series], bool], what: str) -> Series:
    """Scrape until `holds` is true (the series are updated after each batch, not with the ack)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        series = await scrape(url)
        if holds(series):
            return series
        if time.monotonic() > deadline:
            worker = sorted({name for name, _ in series if name.startswith("parley_worker")})
            raise AssertionError(f"{what}: not seen within {WAIT_S:.0f} s; worker series: {worker}")
        await asyncio.sleep(0.5)


def test_run_json_names_the_worker_metrics_port(platform: Platform) -> None:
    info = read_run_info(DataDir.at(platform.data_dir))
    assert info is not None
    assert int(info.settings_env["PARLEY_WORKER_METRICS_PORT"]) == platform.settings.worker_metrics_port > 0


async def test_worker_series_move_after_commands(platform: Platform, users: Users) -> None:
    url = metrics_url(platform)
    settings = platform.settings
    before = await scrape(url)
    assert value(before, "process_resident_memory_bytes") > 0
    assert ("process_cpu_seconds_total", frozenset()) in before
    assert value(before, "parley_worker_rebalances_total") >= 1  # joining the group is one
    assert value(before, "parley_worker_rebalancing") == 0
    started = time.time()

    alice, bob = await users.new(), await users.new()
    created = await alice.ok("conversation:create", {"kind": "direct", "participant_ids": [bob.user_id]})
    for i in range(3):
        await alice.ok("message:send", {"conversation_id": created["conversation_id"], "body": f"m{i}"})
    refused = await alice.error("message:send", {"conversation_id": created["conversation_id"], "body": ""})
    assert refused  # refused by the gateway or the domain: either way it is not ok

    # 2 registrations + 1 conversation + 3 messages decided ok.
    decided_ok = "parley_worker_commands_decided_total"
    after = await until(
        url,
        lambda s: (
            value(s, decided_ok, outcome="ok") >= value(before, decided_ok, outcome="ok") + 6
            and value(s, "parley_worker_project_batch_size_sum", agent="project")
            >= value(before, "parley_worker_project_batch_size_sum", agent="project") + 6
        ),
        "decided and projected batches",
    )
    assert value(after, "parley_worker_decide_batch_seconds_count") > value(
        before, "parley_worker_decide_batch_seconds_count"
    )
    assert value(after, "parley_worker_project_batch_seconds_count", agent="project") > value(
        before, "parley_worker_project_batch_seconds_count", agent="project"
    )

    # The lag is measured after our commands were applied: every projection, every partition, caught up.
    def lag_caught_up(s: Series) -> bool:
        if value(s, "parley_worker_projection_lag_sampled_timestamp_seconds") <= started:
            return False
        lags = {labels: v for (name, labels), v in s.items() if name == "parley_worker_projection_lag_records"}
        projections = {dict(labels)["projection"] for labels in lags}
        return projections == set(projection_names()) and all(v == 0 for v in lags.values())

    lagged = await until(url, lag_caught_up, "a lag of 0 for every projection")
    events_partitions = {
        dict(labels)["partition"]
        for (name, labels), _ in lagged.items()
        if name == "parley_worker_projection_lag_records" and dict(labels)["projection"] == "messages"
    }
    assert events_partitions == {str(p) for p in range(settings.partitions)}
    assert value(lagged, "parley_worker_assigned_partitions", topic=settings.events_topic) == settings.partitions


async def test_a_parked_command_is_counted(platform: Platform) -> None:
    url = metrics_url(platform)
    settings = platform.settings
    name, labels = "parley_worker_dead_letters_total", {"source_topic": settings.commands_topic, "kind": "undecodable"}
    before = value(await scrape(url), name, **labels)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(settings.commands_topic, b"not a command envelope", key=b"metrics-test")
    finally:
        await producer.stop()
    await until(url, lambda s: value(s, name, **labels) == before + 1, "the parked command")
