"""Servers for the ops tests, and a fresh namespace (topic prefix + database) per test.

By default they reuse the session's running platform (`stack_settings` from
tests/conftest.py): one set of servers per test session. With PARLEY_OPS_OWN_SERVERS=1
this starts its own throwaway Kafka and MongoDB (the local stack's, on a temporary data dir)
instead, which is quicker when running only the ops tests.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from domain.envelope import EventEnvelope, Rejection
from infra.kafka.producer import EventProducer
from infra.mongo.client import MongoDoc, mongo_client, mongo_db
from infra.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[3]
MASTER_KEY = secrets.token_urlsafe(32)  # this session's: the ops tests' key stores are their own


@pytest.fixture(scope="session")
def ops_servers(request: pytest.FixtureRequest) -> Iterator[Settings]:
    """Settings naming a Kafka and a MongoDB (nothing else is set)."""
    if os.environ.get("PARLEY_OPS_OWN_SERVERS") != "1":
        platform: Settings = request.getfixturevalue("stack_settings")
        yield Settings(kafka_bootstrap=platform.kafka_bootstrap, mongo_url=platform.mongo_url, master_key=MASTER_KEY)
        return
    from infra.localstack.datadir import DataDir
    from infra.localstack.stack import LocalStack

    root = Path(tempfile.mkdtemp(prefix="parley-ops-"))
    # Only Kafka and MongoDB: the other URLs are set so that none start.
    base = Settings(
        data_dir=root,
        redis_url="redis://127.0.0.1:1",
        elasticsearch_url="http://127.0.0.1:1",
        s3_endpoint="127.0.0.1:1",
    )
    stack = LocalStack(base, DataDir.at(root))
    loop = asyncio.new_event_loop()
    try:
        resolved = loop.run_until_complete(stack.start())
        yield Settings(kafka_bootstrap=resolved.kafka_bootstrap, mongo_url=resolved.mongo_url, master_key=MASTER_KEY)
    finally:
        loop.run_until_complete(stack.supervisor.stop_all())
        loop.close()
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class OpsEnv:
    """One test's namespace: its own topics (prefix) and database on the shared servers."""

    settings: Settings
    db: AsyncDatabase[MongoDoc]
    client: AsyncMongoClient[MongoDoc]

    async def create_topics(self, events: int = 3, rejections: int = 2) -> None:
        """Create the topics with explicit partition counts before anything touches them
        (the broker would auto-create unknown topics with 4 partitions)."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap, client_id="ops-tests")
        await admin.start()
        try:
            await admin.create_topics(
                [
                    NewTopic(self.settings.events_topic, events, 1),
                    NewTopic(self.settings.rejections_topic, rejections, 1),
                    NewTopic(self.settings.refusals_topic, rejections, 1),
                ]
            )
        finally:
            await admin.close()

    async def produce(
        self, events: Sequence[EventEnvelope] = (), rejections: Sequence[Rejection] = ()
    ) -> list[tuple[int, int]]:
        async with EventProducer(self.settings) as producer:
            placed = await producer.send_events(list(events))
            for rejection in rejections:
                placed.append(await producer.send_rejection(rejection))
        return placed

    def env(self) -> dict[str, str]:
        """The environment for a `parley` subprocess that reaches this namespace."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
        env.update(
            PARLEY_KAFKA_BOOTSTRAP=self.settings.kafka_bootstrap,
            PARLEY_MONGO_URL=self.settings.mongo_url,
            PARLEY_MONGO_DB=self.settings.mongo_db,
            PARLEY_TOPIC_PREFIX=self.settings.topic_prefix,
            PARLEY_PARTITIONS=str(self.settings.partitions),
            PARLEY_MASTER_KEY=self.settings.master_key,
            PYTHONPATH=str(REPO_ROOT),
        )
        return env

    def cli(
        self, *args: str, timeout: float = 120.0, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "api.cli.main", *args],
            cwd=REPO_ROOT,
            env=env if env is not None else self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture
async def ops(ops_servers: Settings) -> AsyncIterator[OpsEnv]:
    name = f"ops{uuid.uuid4().hex[:10]}"
    settings = ops_servers.model_copy(update={"topic_prefix": name, "mongo_db": name, "partitions": 3})
    client = mongo_client(settings)
    env = OpsEnv(settings, mongo_db(client, settings), client)
    try:
        yield env
    finally:
        await client.drop_database(name)
        await client.drop_database(settings.key_store_database)
        await client.close()
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="ops-tests")
        try:
            await admin.start()
            await admin.delete_topics([settings.events_topic, *settings.rejection_topics])
        except Exception:  # best effort: the topic names are unique to this test anyway
            pass
        finally:
            await admin.close()
