"""Idempotent creation of everything the platform expects to exist: topics, bucket, indexes.

Run by `parley up` before the worker and gateway start, and safe to run again at any time.
Topics are created explicitly with their partition counts before anything else touches them:
a broker with auto-create on would otherwise create them on the first metadata
request with a default count, and a Faust changelog whose partition count differs from its
source topic crashes the worker.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import urllib3
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from minio import Minio
from minio.error import S3Error

from infra.mongo.client import mongo_client, mongo_db
from infra.mongo.indexes import ensure_indexes
from infra.settings import WORKER_TABLES, Settings

TOPIC_ALREADY_EXISTS = 36  # Kafka protocol error code


class ProvisionError(Exception):
    """Something the platform needs could not be created, or exists in an incompatible shape."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


def topic_plan(settings: Settings) -> list[TopicSpec]:
    """Every topic the platform uses, with its partition count."""
    n = settings.partitions
    return [
        # Commands carry personal data as sent (bodies, names) and matter for seconds: kept briefly,
        # so an erasure reaches them once this has passed (docs/THREAT-MODEL.md).
        # Segments roll hourly at most: Kafka deletes closed segments only.
        TopicSpec(
            settings.commands_topic,
            n,
            {
                "retention.ms": str(settings.commands_retention_ms),
                "segment.ms": str(min(settings.commands_retention_ms, 3600 * 1000)),
            },
        ),
        # The system of record: never expire events.
        TopicSpec(settings.events_topic, n, {"retention.ms": "-1"}),
        TopicSpec(settings.rejections_topic, n, {"retention.ms": "-1"}),
        TopicSpec(settings.refusals_topic, n, {"retention.ms": "-1"}),
        TopicSpec(settings.dead_letter_topic, 1, {"retention.ms": "-1"}),
        *(
            TopicSpec(settings.table_changelog_topic(table), n, {"cleanup.policy": "compact"})
            for table in WORKER_TABLES
        ),
    ]


def s3_client(settings: Settings, timeout_s: float = 10.0) -> Any:
    """A MinIO client for settings.s3_endpoint, with bounded timeouts (minio's default waits minutes)."""
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s),
        retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
    )
    return Minio(
        settings.s3_endpoint,
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key,
        secure=settings.s3_secure,
        region=settings.s3_region,
        http_client=http,
    )


async def ensure_topics(settings: Settings) -> None:
    plan = topic_plan(settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="parley-provision")
    await admin.start()
    try:
        response = await admin.create_topics(
            [NewTopic(t.name, t.partitions, settings.replication_factor, topic_configs=dict(t.config)) for t in plan]
        )
        for entry in response.topic_errors:
            name, code = entry[0], entry[1]
            if code not in (0, TOPIC_ALREADY_EXISTS):
                message = entry[2] if len(entry) > 2 else ""
                raise ProvisionError(f"creating topic {name} failed: error {code} {message or ''}".strip())
        # Only now describe them: describing a missing topic would auto-create it with the default count.
        actual = await _partition_counts(admin, [t.name for t in plan])
        for t in plan:
            if actual.get(t.name) != t.partitions:
                raise ProvisionError(
                    f"topic {t.name} has {actual.get(t.name)} partitions, expected {t.partitions} "
                    "(created earlier with another count; recreate it or change the settings)"
                )
    finally:
        await admin.close()


async def _partition_counts(admin: AIOKafkaAdminClient, names: list[str], within_s: float = 30.0) -> dict[str, int]:
    """Each topic's partition count once every partition has a leader.

    A topic created a moment ago is known to the controller before the broker's metadata cache
    has it: until then it is described with an error or without partitions or leaders."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        described = await admin.describe_topics(names)
        settled = all(
            d.get("error_code", 0) == 0 and d["partitions"] and all(p.get("leader", -1) >= 0 for p in d["partitions"])
            for d in described
        )
        if settled or asyncio.get_running_loop().time() > deadline:
            return {d["topic"]: len(d["partitions"]) for d in described}
        await asyncio.sleep(0.1)


def ensure_bucket(settings: Settings, bucket: str) -> None:
    """Create the bucket unless it exists (blocking: call through asyncio.to_thread)."""
    client = s3_client(settings)
    if client.bucket_exists(bucket):
        return
    try:
        client.make_bucket(bucket, location=settings.s3_region)
    except S3Error as e:
        if e.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise


async def ensure_mongo(settings: Settings) -> None:
    client = mongo_client(settings, timeout_ms=10_000)
    try:
        await ensure_indexes(mongo_db(client, settings))
    finally:
        await client.close()


async def ensure_search(settings: Settings) -> None:
    from infra.search_client import search_client
    from infra.search_indexes import ensure_search_indexes

    client = search_client(settings)
    try:
        await ensure_search_indexes(client, settings)
    finally:
        await client.close()


async def provision(settings: Settings) -> None:
    """Create the topics, the media bucket, the Mongo and search indexes; a no-op when all exist."""
    await ensure_topics(settings)
    await asyncio.to_thread(ensure_bucket, settings, settings.media_bucket)
    await ensure_mongo(settings)
    await ensure_search(settings)


def main() -> int:
    """`python -m infra.provision`: provision the servers the environment names (docker-compose's init job)."""
    import sys

    try:
        asyncio.run(provision(Settings()))
    except Exception as exc:
        print(f"parley provision: {exc}", file=sys.stderr)
        return 1
    print("parley provision: topics, bucket and indexes are in place")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
