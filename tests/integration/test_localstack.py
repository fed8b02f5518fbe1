"""The local stack's servers answer real requests, and provisioning is idempotent."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from minio.error import S3Error
from pymongo import AsyncMongoClient
from redis.asyncio import Redis

from infra.localstack.datadir import DataDir
from infra.localstack.stack import LocalStack
from infra.provision import provision, s3_client, topic_plan
from infra.settings import Settings
from tests.conftest import Platform

pytestmark = pytest.mark.integration

TEST_DB = "parley_localstack_test"
JVM_EXIT_ON_SIGTERM = 143


def _mongo(settings: Settings) -> AsyncMongoClient[dict[str, Any]]:
    return AsyncMongoClient(settings.mongo_url, serverSelectionTimeoutMS=5000)


async def test_mongo_is_a_primary_and_runs_transactions(stack_settings: Settings) -> None:
    client = _mongo(stack_settings)
    try:
        hello = await client.admin.command("hello")
        assert hello["isWritablePrimary"] is True
        assert hello["setName"] == "rs0"
        coll = client[TEST_DB]["tx"]
        await coll.drop()
        marker = uuid.uuid4().hex
        async with client.start_session() as session, await session.start_transaction():
            await coll.insert_one({"_id": f"{marker}-1"}, session=session)
            await coll.insert_one({"_id": f"{marker}-2"}, session=session)
        assert await coll.count_documents({"_id": {"$regex": f"^{marker}"}}) == 2

        aborted = uuid.uuid4().hex
        async with client.start_session() as session:
            await session.start_transaction()
            await coll.insert_one({"_id": aborted}, session=session)
            await session.abort_transaction()
        assert await coll.count_documents({"_id": aborted}) == 0
    finally:
        await client.drop_database(TEST_DB)
        await client.close()


async def test_redis_set_get(stack_settings: Settings) -> None:
    client = Redis.from_url(stack_settings.redis_url)
    try:
        key = f"test:localstack:{uuid.uuid4().hex}"
        await client.set(key, b"value", ex=60)
        assert await client.get(key) == b"value"
        await client.delete(key)
    finally:
        await client.aclose()


async def test_topics_have_the_configured_partition_counts(stack_settings: Settings) -> None:
    plan = topic_plan(stack_settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=stack_settings.kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([t.name for t in plan])
    finally:
        await admin.close()
    actual = {d["topic"]: len(d["partitions"]) for d in described}
    assert actual == {t.name: t.partitions for t in plan}
    assert actual[stack_settings.events_topic] == stack_settings.partitions
    assert actual[stack_settings.dead_letter_topic] == 1


async def test_kafka_produce_consume_with_key_and_headers(stack_settings: Settings) -> None:
    # The dead-letter topic: provisioned, and no agent consumes it (a stray record harms nobody).
    topic = stack_settings.dead_letter_topic
    key = f"localstack-test-{uuid.uuid4().hex}".encode()
    headers = [("test", b"localstack"), ("id", key)]
    producer = AIOKafkaProducer(bootstrap_servers=stack_settings.kafka_bootstrap)
    await producer.start()
    try:
        meta = await producer.send_and_wait(topic, b'{"test": true}', key=key, headers=headers)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(bootstrap_servers=stack_settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, meta.partition)
        consumer.assign([tp])
        consumer.seek(tp, meta.offset)
        record = await asyncio.wait_for(consumer.getone(), 10)
    finally:
        await consumer.stop()
    assert record.key == key
    assert record.value == b'{"test": true}'
    assert list(record.headers) == headers


async def test_elasticsearch_index_and_search(stack_settings: Settings) -> None:
    index = f"localstack-test-{uuid.uuid4().hex}"
    # Plain JSON media types: osmem-server refuses the elasticsearch client's compatible-with ones.
    async with httpx.AsyncClient(base_url=stack_settings.elasticsearch_url, timeout=10) as http:
        try:
            r = await http.put(f"/{index}/_doc/1", params={"refresh": "true"}, json={"body": "hello parley world"})
            assert r.status_code in (200, 201), r.text
            r = await http.post(f"/{index}/_search", json={"query": {"match": {"body": "parley"}}})
            assert r.status_code == 200, r.text
            hits = r.json()["hits"]["hits"]
            assert [h["_id"] for h in hits] == ["1"]
        finally:
            await http.delete(f"/{index}")


async def test_s3_put_get_presigned_and_wrong_secret(stack_settings: Settings) -> None:
    client = s3_client(stack_settings)
    bucket = stack_settings.media_bucket
    name = f"test/localstack/{uuid.uuid4().hex}"

    def put_get() -> bytes:
        import io

        client.put_object(bucket, name, io.BytesIO(b"content"), length=7, content_type="text/plain")
        resp = client.get_object(bucket, name)
        try:
            data: bytes = resp.read()
        finally:
            resp.close()
            resp.release_conn()
        return data

    assert await asyncio.to_thread(put_get) == b"content"
    get_url = client.presigned_get_object(bucket, name, expires=timedelta(minutes=5))
    put_url = client.presigned_put_object(bucket, f"{name}-2", expires=timedelta(minutes=5))
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.get(get_url)
        assert r.status_code == 200 and r.content == b"content"
        r = await http.put(put_url, content=b"uploaded")
        assert r.status_code == 200, r.text
        assert (await http.get(client.presigned_get_object(bucket, f"{name}-2"))).content == b"uploaded"
        tampered = get_url.replace("X-Amz-Signature=", "X-Amz-Signature=0")
        assert (await http.get(tampered)).status_code == 403

    wrong = s3_client(stack_settings.model_copy(update={"s3_secret_key": "not-the-secret"}))
    with pytest.raises(S3Error):
        await asyncio.to_thread(wrong.stat_object, bucket, name)
    await asyncio.to_thread(client.remove_object, bucket, name)
    await asyncio.to_thread(client.remove_object, bucket, f"{name}-2")


def _command_lines_naming(text: str) -> list[list[str]]:
    """The argv of every process of this user whose command line contains `text`."""
    found: list[list[str]] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile, or not ours
            continue
        decoded = [a.decode(errors="replace") for a in argv if a]
        if any(text in a for a in decoded):
            found.append(decoded)
    return found


def test_the_s3_secret_is_not_on_any_command_line(platform: Platform) -> None:
    settings = platform.settings
    s3_root = str(DataDir.at(platform.data_dir).s3_root)
    servers = [argv for argv in _command_lines_naming(s3_root) if "serve" in argv]
    assert servers, f"no rclone serve process names {s3_root}"  # the search itself works
    assert len(settings.s3_secret_key) >= 16
    assert _command_lines_naming(settings.s3_secret_key) == []


async def test_provisioning_is_idempotent(stack_settings: Settings) -> None:
    await provision(stack_settings)
    await provision(stack_settings)
    await test_topics_have_the_configured_partition_counts(stack_settings)


async def _occupy(port: int) -> asyncio.Server:
    """Another program on the port: it accepts connections and closes them at once.

    (A listener that never answers would make mongod wait ~30 s probing whether the old
    host:port in its stored config is itself.)
    """

    async def close(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    return await asyncio.start_server(close, "127.0.0.1", port, reuse_address=True)


async def test_mongo_moves_to_a_new_port_and_keeps_its_data(stack_settings: Settings, tmp_path: Path) -> None:
    """Only mongod local (the rest external): its stored port is taken on restart -> forced reconfig."""
    data_dir = DataDir.at(tmp_path / "data")
    settings = stack_settings.model_copy(update={"mongo_url": "", "data_dir": data_dir.root})
    stack = LocalStack(settings, data_dir)
    try:
        first = await stack.start()
        assert [c.name for c in stack.supervisor.children] == ["mongo (mongod)"]
        client = _mongo(first)
        await client[TEST_DB]["kept"].insert_one({"_id": "doc"})
        await client.close()
    finally:
        await stack.supervisor.stop_all()

    old_port = stack.ports["mongo"]
    occupant = await _occupy(old_port)
    stack = LocalStack(settings, data_dir)
    try:
        second = await stack.start()
        assert stack.ports["mongo"] != old_port
        client = _mongo(second)
        hello = await client.admin.command("hello")
        assert hello["isWritablePrimary"] is True
        assert hello["me"] == f"127.0.0.1:{stack.ports['mongo']}"
        assert await client[TEST_DB]["kept"].find_one({"_id": "doc"}) == {"_id": "doc"}
        await client.close()
    finally:
        await stack.supervisor.stop_all()
        occupant.close()
    assert all(c.exit_code() == 0 for c in stack.supervisor.children)


async def test_kafka_moves_to_new_ports_and_keeps_its_log(stack_settings: Settings, tmp_path: Path) -> None:
    """Only Kafka local: both stored ports (broker and controller) are taken on restart; the
    static controller quorum follows the new config, and every record written before is read back."""
    data_dir = DataDir.at(tmp_path / "data")
    settings = stack_settings.model_copy(update={"kafka_bootstrap": "", "data_dir": data_dir.root})
    stack = LocalStack(settings, data_dir)
    topic = f"kept-{uuid.uuid4().hex[:8]}"
    try:
        first = await stack.start()
        assert [c.name for c in stack.supervisor.children] == ["kafka (kafka)"]
        admin = AIOKafkaAdminClient(bootstrap_servers=first.kafka_bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic(topic, 1, 1)])
        await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=first.kafka_bootstrap, acks="all", enable_idempotence=True)
        await producer.start()
        for i in range(50):
            await producer.send(topic, f"r{i}".encode())
        await producer.flush()
        await producer.stop()
    finally:
        await stack.supervisor.stop_all()
    # A JVM that ran its shutdown hooks on SIGTERM exits with 128 + 15.
    assert all(not c.killed and c.exit_code() == JVM_EXIT_ON_SIGTERM for c in stack.supervisor.children)

    old = (stack.ports["kafka"], stack.ports["kafka-controller"])
    occupants = [await _occupy(port) for port in old]
    stack = LocalStack(settings, data_dir)
    try:
        second = await stack.start()
        assert stack.ports["kafka"] not in old and stack.ports["kafka-controller"] not in old
        values = await _read_all(second.kafka_bootstrap, topic, 0, 50)
    finally:
        await stack.supervisor.stop_all()
        for occupant in occupants:
            occupant.close()
    assert values == [f"r{i}".encode() for i in range(50)]


async def _read_all(bootstrap: str, topic: str, partition: int, count: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        values: list[bytes] = []
        async with asyncio.timeout(30):
            while len(values) < count:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                values.extend(r.value for r in batch.get(tp, []) if r.value is not None)
        return values
    finally:
        await consumer.stop()


async def test_four_concurrent_producers_to_one_partition_lose_nothing(stack_settings: Settings) -> None:
    """Every acknowledged record is in the log exactly once, each at its own offset."""
    topic = f"concurrent-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=stack_settings.kafka_bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 1, 1)])
    await admin.close()
    producers = [
        AIOKafkaProducer(bootstrap_servers=stack_settings.kafka_bootstrap, acks="all", enable_idempotence=True)
        for _ in range(4)
    ]
    for producer in producers:
        await producer.start()

    async def write(n: int, producer: AIOKafkaProducer) -> list[tuple[int, bytes]]:
        futures = [await producer.send(topic, f"p{n}-{i}".encode(), partition=0) for i in range(500)]
        acked = await asyncio.gather(*futures)
        return [(int(md.offset), f"p{n}-{i}".encode()) for i, md in enumerate(acked)]

    try:
        results = await asyncio.gather(*(write(n, p) for n, p in enumerate(producers)))
    finally:
        for producer in producers:
            await producer.stop()
    acked = dict(pair for result in results for pair in result)
    assert len(acked) == 2000  # no offset acknowledged twice
    values = await _read_all(stack_settings.kafka_bootstrap, topic, 0, 2000)
    assert len(values) == 2000
    assert {offset: value for offset, value in enumerate(values)} == acked
