"""`parley up` as a user runs it: locking, failing cleanly, stopping cleanly, restarting durably."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo import AsyncMongoClient
from redis.asyncio import Redis

from api.cli.context import NoPlatformError, load_settings
from infra.localstack.datadir import DataDir
from infra.localstack.ports import free_port
from infra.localstack.runfile import RunInfo, write_run_info
from infra.settings import Settings
from tests.conftest import Platform, start_up, stop_up, up_command, wait_ready

pytestmark = pytest.mark.e2e

EXTERNAL_URL_VARS = (
    "PARLEY_KAFKA_BOOTSTRAP",
    "PARLEY_MONGO_URL",
    "PARLEY_REDIS_URL",
    "PARLEY_ELASTICSEARCH_URL",
    "PARLEY_S3_ENDPOINT",
)


def local_env() -> dict[str, str]:
    """This environment with every server local (what `parley up` does on a laptop)."""
    return {k: v for k, v in os.environ.items() if k not in EXTERNAL_URL_VARS}


def processes_using(path: Path) -> list[str]:
    """Processes whose command line, working dir or PARLEY_DATA_DIR names `path` (a scan of /proc)."""
    root = str(path.resolve())
    marker = f"PARLEY_DATA_DIR={root}\0".encode()
    found: list[str] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            cwd = os.readlink(entry / "cwd")
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone meanwhile, or a zombie
            continue
        if root in cmdline or cwd == root or cwd.startswith(root + "/") or marker in environ:
            found.append(f"{entry.name}: {cmdline}")
    return found


def test_second_up_on_the_same_data_dir_is_refused(platform: Platform) -> None:
    result = subprocess.run(
        up_command(platform.data_dir, free_port()), capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    output = (result.stdout + result.stderr).strip()
    assert len(output.splitlines()) == 1, output
    assert "already running" in output and str(platform.data_dir.resolve()) in output


def test_load_settings_reaches_the_running_platform(platform: Platform) -> None:
    settings = load_settings(platform.data_dir)
    assert settings.port == platform.port
    assert settings.data_dir == platform.data_dir.resolve()
    assert settings.kafka_bootstrap and settings.mongo_url and settings.redis_url
    assert settings.elasticsearch_url and settings.s3_endpoint and settings.s3_secret_key and settings.jwt_secret
    assert (platform.data_dir / "run.json").stat().st_mode & 0o077 == 0
    assert (platform.data_dir / "secrets.json").stat().st_mode & 0o077 == 0


def test_load_settings_without_a_running_platform(tmp_path: Path) -> None:
    with pytest.raises(NoPlatformError, match="no platform is running"):
        load_settings(tmp_path)
    dead = subprocess.Popen(["true"])
    dead.wait()
    # What a `parley up` killed with SIGKILL leaves behind.
    write_run_info(DataDir.at(tmp_path), RunInfo(pid=dead.pid, settings_env={}, gateway_url="http://x"))
    with pytest.raises(NoPlatformError, match="not running"):
        load_settings(tmp_path)
    assert load_settings(None).port == Settings().port


def test_a_server_that_fails_to_start_is_named_and_nothing_is_left_running(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "mongo").write_text("a file where mongod wants its dbpath\n")
    result = subprocess.run(
        up_command(data_dir, free_port()),
        env=local_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    first_line = result.stderr.strip().splitlines()[0]
    assert "mongod" in first_line and "failed to start" in first_line, result.stderr
    assert "Not a directory" in result.stderr  # the reason, from mongod's own log
    assert processes_using(data_dir) == []
    assert not (data_dir / "run.json").exists()


def test_sigterm_stops_everything_and_exits_0(tmp_path: Path) -> None:
    data_dir, log_path, port = tmp_path / "data", tmp_path / "up.log", free_port()
    proc = start_up(data_dir, port, log_path, env=local_env())
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}", log_path)
        running = processes_using(data_dir)
        # parley up itself, 5 servers, a worker and a gateway.
        assert len(running) >= 8, running
        assert (data_dir / "run.json").exists()
    finally:
        code = stop_up(proc)
    assert code == 0, log_path.read_text()[-4000:]
    assert processes_using(data_dir) == []
    assert not (data_dir / "run.json").exists()


@pytest.mark.restart
async def test_restart_keeps_the_log_the_documents_the_keys_and_the_secrets(platform: Platform) -> None:
    before = platform.settings
    topic = f"{before.topic_prefix}.test-restart-{uuid.uuid4().hex[:8]}"
    records = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(50)]
    admin = AIOKafkaAdminClient(bootstrap_servers=before.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=before.kafka_bootstrap)
    await producer.start()
    try:
        for key, value in records:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()
    mongo: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(before.mongo_url)
    await mongo["parley_restart_test"]["kept"].insert_one({"_id": "doc"})
    await mongo.close()
    redis = Redis.from_url(before.redis_url)
    await redis.set("test:restart:kept", b"yes")
    await redis.aclose()

    platform.restart()  # blocking on purpose: PR_SET_PDEATHSIG ties `parley up` to this (main) thread
    after = platform.settings
    cold, warm = platform.start_seconds[0], platform.start_seconds[-1]
    print(f"\nrestart until ready: {warm:.1f} s (cold start: {cold:.1f} s)")

    assert (after.jwt_secret, after.s3_secret_key) == (before.jwt_secret, before.s3_secret_key)
    consumer = AIOKafkaConsumer(bootstrap_servers=after.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        got: list[tuple[bytes | None, bytes | None]] = []
        while len(got) < len(records):
            batch = await asyncio.wait_for(consumer.getmany(tp, timeout_ms=1000), 30)
            got.extend((r.key, r.value) for r in batch.get(tp, []))
    finally:
        await consumer.stop()
    assert got == records
    mongo = AsyncMongoClient(after.mongo_url)
    try:
        assert await mongo["parley_restart_test"]["kept"].find_one({"_id": "doc"}) == {"_id": "doc"}
        await mongo.drop_database("parley_restart_test")
    finally:
        await mongo.close()
    redis = Redis.from_url(after.redis_url)
    try:
        assert await redis.get("test:restart:kept") == b"yes"
    finally:
        await redis.aclose()


def test_processes_using_sees_a_process_by_its_working_dir(tmp_path: Path) -> None:
    """The orphan scan itself works (a scan that finds nothing would prove nothing)."""
    proc = subprocess.Popen(["sleep", "30"], cwd=tmp_path)
    try:
        assert any(line.startswith(f"{proc.pid}:") for line in processes_using(tmp_path))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert processes_using(tmp_path) == []
