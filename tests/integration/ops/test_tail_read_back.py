"""Records the worker's stream skipped at the tail of a partition are read back from the log.

Around a rebalance a Faust stream drops the records it fetched under the previous generation,
while the consumer's position is already past them. When nothing is appended after them, no
later record reveals the gap (``Holes.complete``): the runtime compares the consumer's position
with what it applied, and reads back a tail that stays stuck (``read_back_tails``). Real Kafka,
real MongoDB; the result must equal a runtime that was given every record.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from infra.kafka.log_reader import KafkaRecordSource, LogReader
from infra.kafka.offsets import log_end_offsets
from infra.mongo.audit_trail import AUDIT, verify_trail
from infra.mongo.documents import Positions
from projections.catalog import DOCUMENT_PROJECTIONS
from streams.runtime import ProjectionRuntime, Record
from tests.integration.ops.conftest import OpsEnv
from tests.integration.ops.live import LiveAgent, documents
from tests.unit.ops.events import chat_log

TAIL = 3  # records of each partition the stream never delivers


async def _log(ops: OpsEnv, topic: str) -> AsyncIterator[Record]:
    async with LogReader(ops.settings, topic) as reader:
        async for batch in reader.raw_batches():
            for r in batch:
                if r.value is not None:
                    yield Record(r.partition, r.offset, r.value)


def _runtime(ops: OpsEnv) -> ProjectionRuntime:
    live = LiveAgent(ops.settings, ops.db, DOCUMENT_PROJECTIONS)
    live.runtime.log_source = KafkaRecordSource(ops.settings)
    return live.runtime


async def test_a_skipped_tail_is_read_back_once_it_stays_stuck(ops: OpsEnv) -> None:
    await ops.create_topics(events=2, rejections=1)
    log = chat_log(seed=31, messages=40)
    await ops.produce(log.events, log.rejections)
    events, rejections = ops.settings.events_topic, ops.settings.rejections_topic
    ends = await log_end_offsets(ops.settings, [events, rejections])
    assert all(end > TAIL for end in ends[events].values()) and ends[rejections][0] > TAIL

    runtime = _runtime(ops)
    # The agents got everything but each partition's last records; the consumer fetched past them.
    delivered = [r async for r in _log(ops, events) if r.offset < ends[events][r.partition] - TAIL]
    for i in range(0, len(delivered), 7):
        await runtime.events_batch(delivered[i : i + 7])
    refused = [r async for r in _log(ops, rejections) if r.offset < ends[rejections][0] - TAIL]
    await runtime.rejections_batch(refused, rejections)

    # The first check only notes where each partition stands: a stream may still be delivering.
    assert await runtime.read_back_tails(events, ends[events]) == 0
    assert await runtime.read_back_tails(rejections, ends[rejections]) == 0
    # Still stuck at the same offsets at the next check: the tails are read back and applied.
    assert await runtime.read_back_tails(events, ends[events]) == TAIL * len(ends[events])
    assert await runtime.read_back_tails(rejections, ends[rejections]) == TAIL
    # Caught up: nothing more to read, however often it is asked.
    for _ in range(2):
        assert await runtime.read_back_tails(events, ends[events]) == 0

    positions = Positions(ops.db)
    for name in (*DOCUMENT_PROJECTIONS, AUDIT):
        assert await positions.load(name, events) == ends[events], name
    assert await positions.load(AUDIT, rejections) == ends[rejections]
    report = await verify_trail(ops.settings, ops.db)
    assert report.ok and report.pending == 0, report.summary()
    assert report.records == sum(ends[events].values()) + sum(ends[rejections].values())

    # The same read models as a runtime that was given every record.
    other = ops.settings.model_copy(update={"mongo_db": f"{ops.settings.mongo_db}_all"})
    reference = LiveAgent(other, ops.client[other.mongo_db], DOCUMENT_PROJECTIONS)
    try:
        await reference.step()
        for name in DOCUMENT_PROJECTIONS:
            ours = await documents(ops.db, await runtime.registry.live_collection(name))
            theirs = await documents(reference.runtime.database, await reference.registry.live_collection(name))
            assert ours == theirs and ours, name
    finally:
        await ops.client.drop_database(other.mongo_db)


async def test_a_partition_that_moves_is_left_to_its_stream(ops: OpsEnv) -> None:
    await ops.create_topics(events=1, rejections=1)
    log = chat_log(seed=32, messages=30)
    await ops.produce(log.events)
    events = ops.settings.events_topic
    end = (await log_end_offsets(ops.settings, [events]))[events][0]
    records = [r async for r in _log(ops, events)]
    runtime = _runtime(ops)
    await runtime.events_batch(records[:10])
    assert await runtime.read_back_tails(events, {0: end}) == 0
    await runtime.events_batch(records[10:20])  # the stream delivered more meanwhile
    assert await runtime.read_back_tails(events, {0: end}) == 0
    assert await Positions(ops.db).load(AUDIT, events) == {0: records[19].offset + 1}
    # It stopped moving short of the consumer's position: now the tail is read back.
    assert await runtime.read_back_tails(events, {0: end}) == end - records[20].offset
    assert await Positions(ops.db).load(AUDIT, events) == {0: end}


async def test_no_read_back_while_the_agent_is_in_a_batch(ops: OpsEnv) -> None:
    await ops.create_topics(events=1, rejections=1)
    await ops.produce(chat_log(seed=33, messages=10).events)
    events = ops.settings.events_topic
    end = (await log_end_offsets(ops.settings, [events]))[events][0]
    runtime = _runtime(ops)
    await runtime.read_back_tails(events, {0: end})
    async with runtime._lock(events):  # the agent's batch holds the topic
        assert await runtime.read_back_tails(events, {0: end}) == 0
    assert await runtime.read_back_tails(events, {0: end}) == end
