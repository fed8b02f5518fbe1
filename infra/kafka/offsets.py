"""Offsets of the log: partitions, end offsets, a consumer group's committed offsets.

Everything here uses a plain consumer (no group membership: group joins on the local
broker are slow) and asks for metadata of *all* topics rather than of one topic by name,
because a metadata request naming an unknown topic makes the broker auto-create it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from infra.settings import Settings


class LogUnavailable(Exception):
    """Kafka could not be reached (or did not answer) within the time allowed."""


def plain_consumer(
    settings: Settings,
    *,
    group_id: str | None = None,
    client_id: str = "parley-ops",
    max_records: int = 2000,
    timeout_s: float = 10.0,
) -> AIOKafkaConsumer:
    """A consumer for manual assignment: no auto commit, reads from the earliest offset."""
    if not settings.kafka_bootstrap:
        raise LogUnavailable("no Kafka bootstrap servers configured (PARLEY_KAFKA_BOOTSTRAP or --data-dir)")
    request_ms = max(1000, int(timeout_s * 1000))
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "client_id": client_id,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_poll_records": max_records,
        "fetch_max_bytes": 64 * 1024 * 1024,
        "max_partition_fetch_bytes": 8 * 1024 * 1024,
        "request_timeout_ms": max(request_ms, 5000),
        "retry_backoff_ms": 100,
    }
    return AIOKafkaConsumer(**kwargs)


async def start_consumer(consumer: AIOKafkaConsumer, bootstrap: str, timeout_s: float = 10.0) -> None:
    """Start a consumer within a bounded time, turning every failure into LogUnavailable."""
    try:
        await asyncio.wait_for(consumer.start(), timeout_s)
    except (KafkaError, OSError, TimeoutError) as exc:
        await _quiet_stop(consumer)
        raise LogUnavailable(f"Kafka unavailable at {bootstrap}: {_describe(exc)}") from exc


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    await _quiet_stop(consumer)


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str, timeout_s: float = 10.0) -> list[int]:
    """The topic's partitions, or [] when the topic does not exist (without auto-creating it).

    Reads them from a fresh all-topics metadata answer: a group-less consumer's own cluster view
    only covers the topics it was told about, so ``partitions_for_topic`` alone says None there.
    """
    try:
        cluster = await asyncio.wait_for(consumer._client.fetch_all_metadata(), timeout_s)
    except (KafkaError, OSError, TimeoutError) as exc:
        raise LogUnavailable(f"Kafka metadata unavailable: {_describe(exc)}") from exc
    return sorted(cluster.partitions_for_topic(topic) or ())


async def end_offsets(
    consumer: AIOKafkaConsumer, topic: str, partitions: Iterable[int], timeout_s: float = 10.0
) -> dict[int, int]:
    """For each partition, the offset the next record will get (the log end: ListOffsets latest)."""
    tps = [TopicPartition(topic, p) for p in partitions]
    if not tps:
        return {}
    try:
        listed = await asyncio.wait_for(consumer.end_offsets(tps), timeout_s)
    except (KafkaError, OSError, TimeoutError) as exc:
        raise LogUnavailable(f"Kafka did not return end offsets of {topic}: {_describe(exc)}") from exc
    return {tp.partition: int(offset) for tp, offset in listed.items()}


async def log_end_offsets(
    settings: Settings, topics: Iterable[str], timeout_s: float = 10.0
) -> dict[str, dict[int, int]]:
    """End offsets of several topics in one connection ({} for a topic that does not exist)."""
    consumer = plain_consumer(settings, timeout_s=timeout_s)
    await start_consumer(consumer, settings.kafka_bootstrap, timeout_s)
    try:
        out: dict[str, dict[int, int]] = {}
        for topic in topics:
            parts = await topic_partitions(consumer, topic, timeout_s)
            out[topic] = await end_offsets(consumer, topic, parts, timeout_s)
        return out
    finally:
        await stop_consumer(consumer)


async def committed_offsets(settings: Settings, group_id: str, topic: str, timeout_s: float = 10.0) -> dict[int, int]:
    """A consumer group's committed offsets on one topic (partitions without a commit are left out).

    Reads the offsets with a group-less fetch of the group's commits: nothing joins the group,
    so a running worker is not made to rebalance.
    """
    consumer = plain_consumer(settings, group_id=group_id, timeout_s=timeout_s)
    await start_consumer(consumer, settings.kafka_bootstrap, timeout_s)
    try:
        parts = await topic_partitions(consumer, topic, timeout_s)
        out: dict[int, int] = {}
        for p in parts:
            try:
                offset = await asyncio.wait_for(consumer.committed(TopicPartition(topic, p)), timeout_s)
            except (KafkaError, OSError, TimeoutError) as exc:
                raise LogUnavailable(f"Kafka did not return committed offsets of {group_id}: {_describe(exc)}") from exc
            if offset is not None and offset >= 0:
                out[p] = int(offset)
        return out
    finally:
        await stop_consumer(consumer)


def lag(ends: Mapping[int, int], positions: Mapping[int, int]) -> int:
    """Records not yet applied: sum over partitions of end offset minus position (never negative)."""
    return sum(max(0, end - positions.get(p, 0)) for p, end in ends.items())


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).strip()
    if "Unable to bootstrap" in text:
        return "no broker answers there"
    text = text.removeprefix("KafkaConnectionError: ")
    return text.splitlines()[0] if text else type(exc).__name__


async def _quiet_stop(consumer: AIOKafkaConsumer) -> None:
    # Best effort on shutdown: the error that brought us here is the one worth reporting.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(consumer.stop(), 5.0)
