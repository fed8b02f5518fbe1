"""A Faust app whose producer is idempotent (``enable_idempotence``, ``acks=all``) and whose
table-write buffer holds a whole decided batch.

Faust turns idempotence on only inside its exactly-once transactions, which Parley does not use
(at-least-once with idempotent consumers). An idempotent producer still matters here: a retried
batch (a lost ack, a leader change) is written once and in order, so the log never holds the
same event twice at two offsets because of the producer itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import EventT

from streams.membership import Membership

log = logging.getLogger("parley.worker")

IDEMPOTENT_PRODUCER: Mapping[str, Any] = {"acks": "all", "enable_idempotence": True}
# Table writes wait in Faust's producer buffer for their changelog send; past its size (100 by
# default) Faust stops handing records to every agent until it drains. A decided batch writes three
# table keys per command, so the default pauses the whole worker after about 33 commands.
TABLE_WRITE_BUFFER = 10_000


class IdempotentProducer(faust_aiokafka.Producer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.buffer.max_messages = TABLE_WRITE_BUFFER

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), **IDEMPOTENT_PRODUCER}


class PromptConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer with the app's ``fetch_max_wait_ms`` instead of Faust's fixed 1,500 ms,
    and which renews the app's membership lease (``streams/membership.py``).

    aiokafka keeps one fetch request in flight per broker and sends the next only once every
    record it buffered has been taken; a request for partitions with nothing new is held by the
    broker up to that wait. Commands that arrive meanwhile wait for it: a short wait lets them in
    sooner, for a few idle fetches a second more.

    The lease is renewed by every heartbeat the coordinator answers, from the moment the request
    left, and by every assignment, from the moment it arrives (the lease's margin covers its
    travel); it follows the coordinator's generation, which aiokafka resets when it learns that
    this member was evicted."""

    def _create_worker_consumer(self, *args: Any, **kwargs: Any) -> Any:
        consumer = super()._create_worker_consumer(*args, **kwargs)
        consumer._fetch_max_wait_ms = int(getattr(self.app, "fetch_max_wait_ms", consumer._fetch_max_wait_ms))
        return consumer

    async def on_start(self) -> None:
        await super().on_start()
        membership: Membership | None = getattr(self.app, "membership", None)
        coordinator = getattr(self._consumer, "_coordinator", None)
        if membership is None or coordinator is None or not hasattr(coordinator, "_do_heartbeat"):
            return
        membership.follow(lambda: int(coordinator.generation))
        beat = coordinator._do_heartbeat

        async def heartbeat() -> bool:
            generation, sent = int(coordinator.generation), time.monotonic()
            answered = bool(await beat())
            if answered:
                membership.renewed(generation, sent)
            return answered

        coordinator._do_heartbeat = heartbeat

    async def on_partitions_assigned(self, assigned: Any, generation_id: int = 0) -> None:
        membership: Membership | None = getattr(self.app, "membership", None)
        if membership is not None:
            membership.renewed(generation_id, time.monotonic())
        await super().on_partitions_assigned(assigned, generation_id)


def head_gap_blocks_commit(acked: Iterable[int], committed: int | None, gaps: Iterable[Any]) -> bool:
    """Whether offsets between the committed offset and the lowest acked one are still unprocessed.

    ``committed`` is the next offset to read; ``gaps`` are the intervals (``begin``, ``end``) of
    offsets the log itself skips (seen missing by the fetcher), which count as processed. An offset
    that was fetched but never acked (a record Faust skips because it was fetched under the previous
    consumer generation) is a real hole: committing past it would lose it.
    """
    offsets = sorted(acked)
    if not offsets or committed is None or offsets[0] <= committed:
        return False
    covered_to = committed
    for begin, end in sorted((int(g.begin), int(g.end)) for g in gaps):
        if begin > covered_to:
            break
        covered_to = max(covered_to, end)
    return covered_to < offsets[0]


class PromptConsumer(faust_aiokafka.Consumer):
    """Faust's consumer, with ``PromptConsumerThread`` and a commit that never skips a hole nor a
    record that no stream took (``ack``).

    Faust decides what to commit from the acked offsets: the first run of consecutive ones, unless
    the run starts more than one past the committed offset. That check is off by one: with offset
    16 committed (next to read) and 16 never acked, acks of 17 and 18 commit 19, and record 16 is
    never processed. It happens after two rebalances in a row (a worker frozen past its session,
    then back): a record fetched under the first generation is skipped, unacked, under the
    second. Here the commit waits instead; the rebalance's seek to the committed offset reads the
    record again.
    """

    def _new_consumer_thread(self) -> Any:
        return PromptConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._held: set[tuple[Any, int | None]] = set()  # holes already logged

    def ack(self, message: Any) -> bool:
        """Record a processed record's offset as safe to commit; never a record no stream took.

        A stream skips, and acks, a record fetched under the previous generation or while a
        rebalance has paused the flow; it does so before it tracks the record, and a record a
        stream took is always tracked. Recording such an ack lets the commit that a rebalance makes
        before it hands partitions over (``stream_wait_empty``) move past a record that was never
        processed, and the rebalance's seek to the committed offset then starts after it: a
        projection went on at the next record, and the trail missed one. Unrecorded, the commit
        stops before it, and the seek reads it again."""
        return bool(message.tracked) and bool(super().ack(message))

    def _new_offset(self, tp: Any) -> int | None:
        committed = self._committed_offset[tp]
        if head_gap_blocks_commit(self._acked[tp], committed, self._gap[tp]):
            if (tp, committed) not in self._held:
                self._held.add((tp, committed))
                log.info("commit of %s held at %s: a record there was fetched but not processed", tp, committed)
            return None
        offset: int | None = super()._new_offset(tp)
        return offset


def abandon(events: Sequence[EventT[Any]], consumer: Any) -> None:
    """Let ``events`` go without acknowledging them: their offsets are never committed by this worker.

    ``take_events`` acknowledges a batch's events in a ``finally`` once the agent is done with it;
    an event already marked acknowledged is skipped there. They are also dropped from the
    consumer's set of events in flight, so that a rebalance waiting for that set to empty
    (``stream_wait_empty``) goes on. Whoever owns their partitions next reads them again from the
    committed offset."""
    unacked = getattr(consumer, "_unacked_messages", None)
    for event in events:
        event.message.acked = True
        if unacked is not None:
            unacked.discard(event.message)


class IdempotentTransport(faust_aiokafka.Transport):
    Producer = IdempotentProducer
    Consumer = PromptConsumer


class ParleyApp(faust.App):
    fetch_max_wait_ms: int = 1500  # create_app sets Settings.kafka_fetch_max_wait_ms
    membership: Membership | None = None  # create_app sets it: the decide agent's fence

    def _new_transport(self) -> Any:
        return IdempotentTransport(self.conf.broker_consumer, self)

    async def maybe_start_producer(self) -> Any:
        """The started producer, without yielding to the event loop when it already runs.

        Faust wraps this in ``stampede``, which awaits ``asyncio.sleep(0)`` three times per
        call, and every record sent (each event, each table write's changelog record) calls it:
        a batch's sends then take three turns of the event loop each, and every other agent's
        work runs in between. Once the producer runs there is nothing to guard."""
        producer = self.producer
        if producer.started and not self.in_transaction:
            return producer
        return await super().maybe_start_producer()

    def _new_producer_transport(self) -> Any:
        return IdempotentTransport(self.conf.broker_producer, self)
