"""CommandBus against the real Kafka of the session stack."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from domain.envelope import CommandEnvelope, Outcome
from domain.names import username_stream_id
from infra.kafka.codec import decode_command, decode_rejection
from infra.kafka.command_bus import CommandBus, Unavailable
from infra.kafka.offsets import topic_partitions
from infra.provision import ensure_topics
from infra.redis_client import redis_client
from infra.replies import RedisReplies, reply_channel
from infra.security.shredding import username_index_key
from infra.settings import Settings
from tests.contracts.command_sender import CommandSenderContract

pytestmark = pytest.mark.integration


@pytest.fixture
async def lonely(stack_settings: Settings) -> Settings:
    """Settings on fresh topics that no worker serves."""
    settings = stack_settings.model_copy(update={"topic_prefix": f"it-bus-{uuid.uuid4().hex[:10]}"})
    await ensure_topics(settings)
    return settings


def envelope(bus: CommandBus, command_type: str = "message:send", **payload: object) -> CommandEnvelope:
    return CommandEnvelope(
        command_id=str(uuid.uuid4()),
        type=command_type,
        aggregate_id=f"conversation:{uuid.uuid4()}",
        actor_id="user-1",
        correlation_id=str(uuid.uuid4()),
        issued_at=datetime.now(UTC),
        payload=dict(payload),
        reply_to=bus.instance_id,
    )


async def tail_consumer(settings: Settings, topic: str) -> AIOKafkaConsumer:
    """A group-less consumer positioned at the current end of every partition of ``topic``."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=None, fetch_max_wait_ms=50, auto_offset_reset="earliest"
    )
    await consumer.start()
    async with asyncio.timeout(30):  # a topic created a moment ago may not be in the metadata yet
        partitions = await topic_partitions(consumer, topic)
        while not partitions:
            await asyncio.sleep(0.05)
            partitions = await topic_partitions(consumer, topic)
    tps = [TopicPartition(topic, p) for p in partitions]
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    for tp in tps:
        await consumer.position(tp)
    return consumer


class FakeWorker:
    """Answers every command on the commands topic: first a decoy reply for another gateway and one
    for an unknown command, then the real one (data echoes the command)."""

    def __init__(self, settings: Settings, *, one_by_one: bool = False) -> None:
        self.settings = settings
        self.one_by_one = one_by_one  # each outcome in a message of its own (the previous release)
        self.seen: list[CommandEnvelope] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> FakeWorker:
        self.consumer = await tail_consumer(self.settings, self.settings.commands_topic)
        self.redis = redis_client(self.settings)
        self.replies = RedisReplies(self.settings, self.redis)
        self._task = asyncio.create_task(self._serve())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self.consumer.stop()
        await self.redis.aclose()

    async def _serve(self) -> None:
        async for record in self.consumer:
            command = decode_command(record.value)
            self.seen.append(command)
            cid, mine = command.command_id, command.reply_to
            # One batch of outcomes, as the worker publishes them: two decoys, then the real one.
            outcomes = [
                Outcome(command_id=command_id, correlation_id=command.correlation_id, ok=True, data=data, reply_to=to)
                for command_id, to, data in (
                    (cid, "another-gateway", {"n": -1}),
                    (str(uuid.uuid4()), mine, {"n": -2}),
                    (cid, mine, {"echo": command.payload}),
                )
            ]
            if self.one_by_one:
                for outcome in outcomes:
                    assert outcome.reply_to is not None
                    await self.redis.publish(reply_channel(self.settings, outcome.reply_to), outcome.model_dump_json())
            else:
                await self.replies.publish(outcomes)


@pytest.fixture
async def bus(lonely: Settings) -> AsyncIterator[CommandBus]:
    b = CommandBus(lonely)
    await b.start()
    try:
        yield b
    finally:
        await b.stop()


async def test_a_reply_is_matched_to_its_command(lonely: Settings, bus: CommandBus) -> None:
    async with FakeWorker(lonely) as worker:
        sent = envelope(bus, body="hello")
        outcome = await bus.execute(sent, timeout=10)
    assert outcome.ok and outcome.command_id == sent.command_id
    assert outcome.data == {"echo": {"body": "hello"}}
    (seen,) = worker.seen
    assert seen == sent  # the command travelled intact


async def test_outcomes_published_one_by_one_are_taken_too(lonely: Settings, bus: CommandBus) -> None:
    # A worker of the previous release sends each outcome in a message of its own.
    async with FakeWorker(lonely, one_by_one=True):
        sent = [envelope(bus, body=f"m{i}") for i in range(5)]
        outcomes = await asyncio.gather(*(bus.execute(e, timeout=10) for e in sent))
    assert [o.data["echo"]["body"] for o in outcomes] == [f"m{i}" for i in range(5)]


async def test_concurrent_commands_each_get_their_own_reply(lonely: Settings, bus: CommandBus) -> None:
    async with FakeWorker(lonely):
        sent = [envelope(bus, body=f"m{i}") for i in range(20)]
        outcomes = await asyncio.gather(*(bus.execute(e, timeout=10) for e in sent))
    assert [o.data["echo"]["body"] for o in outcomes] == [f"m{i}" for i in range(20)]


async def test_two_gateways_only_see_their_own_replies(lonely: Settings, bus: CommandBus) -> None:
    other = CommandBus(lonely)
    await other.start()
    try:
        async with FakeWorker(lonely):
            a, b = envelope(bus, body="a"), envelope(other, body="b")
            got_a, got_b = await asyncio.gather(bus.execute(a, timeout=10), other.execute(b, timeout=10))
    finally:
        await other.stop()
    assert got_a.data["echo"] == {"body": "a"} and got_b.data["echo"] == {"body": "b"}


async def test_no_answer_is_unavailable_within_the_timeout(bus: CommandBus) -> None:
    started = time.monotonic()
    with pytest.raises(Unavailable):
        await bus.execute(envelope(bus), timeout=0.5)
    assert time.monotonic() - started < 2.0


async def test_a_stopped_bus_is_unavailable_at_once(lonely: Settings) -> None:
    b = CommandBus(lonely)
    with pytest.raises(Unavailable):
        await b.execute(envelope(b), timeout=5)


async def test_start_fails_fast_when_redis_is_unreachable(stack_settings: Settings) -> None:
    settings = stack_settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    started = time.monotonic()
    with pytest.raises(Unavailable):
        await CommandBus(settings).start(wait_for_topic_s=1.0)
    assert time.monotonic() - started < 10


async def test_gateway_refusals_land_in_the_refusals_topic(lonely: Settings, bus: CommandBus) -> None:
    consumer = await tail_consumer(lonely, lonely.refusals_topic)
    try:
        await bus.publish_rejection(
            command_id="c-1",
            command_type="message:send",
            aggregate_id="conversation:x",
            actor_id="user-1",
            correlation_id="corr-1",
            code="invalid",
            message="body: too long",
        )
        batches = await consumer.getmany(timeout_ms=5000)
    finally:
        await consumer.stop()
    (record,) = [r for records in batches.values() for r in records]
    rejection = decode_rejection(record.value)
    assert (rejection.command_id, rejection.code, rejection.stage) == ("c-1", "invalid", "gateway")
    assert record.key == b"conversation:x"


async def test_the_real_worker_answers_a_command(stack_settings: Settings) -> None:
    """Through the platform's own worker: a registration is decided and its outcome comes back."""
    b = CommandBus(stack_settings)
    await b.start()
    try:
        name = f"bus{uuid.uuid4().hex[:10]}"
        command = envelope(b, "user:register")
        user_id = str(uuid.uuid4())
        command = command.model_copy(
            update={
                "aggregate_id": username_stream_id(name, username_index_key(stack_settings.master_key)),
                "payload": {"user_id": user_id, "username": name, "password_hash": "x"},
            }
        )
        outcome = await b.execute(command, timeout=15)
        again = await b.execute(command, timeout=15)  # the same command_id: the same result
    finally:
        await b.stop()
    assert outcome.ok and outcome.data == {"user_id": user_id, "version": 1}
    assert again.ok and again.data == outcome.data


class TestKafkaCommandBus(CommandSenderContract):
    """The contract against the session platform: its worker decides."""

    @pytest.fixture
    async def sender(self, stack_settings: Settings) -> AsyncIterator[CommandBus]:
        b = CommandBus(stack_settings)
        await b.start()
        try:
            yield b
        finally:
            await b.stop()
