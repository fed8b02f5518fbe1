"""The Faust app: topics, tables and agents. Thin: decode, call the pure code, write, commit.

- ``decide`` consumes the commands topic (key = aggregate id). Being the only consumer of a
  partition, it is the single writer of every aggregate in it; its tables are partitioned
  the same way (their changelog topics have the commands topic's partition count). It takes
  commands in batches (``DECIDE_BATCH`` within ``DECIDE_WITHIN_S``), decides them in order
  against an overlay of its tables (``commands/batch.py``), sends every event and rejection
  of the batch, waits once for all the acknowledgements, then saves each changed key once
  (the message index, durable before the aggregate records and outcomes) and publishes the
  outcomes. Personal fields are sealed under their user's data key on the way
  out (``infra/security/shredding.py``): the keys a batch needs are loaded (or created) before
  it is decided, and a ``UserErased`` destroys its user's key before it is appended, so no
  reader opens anything of theirs once the event is in the log.

  Failure policy of ``decide``: a command that cannot be decoded is parked in the dead-letter
  topic; one whose decision raises is refused alone with ``internal``. An append (or a
  parking) that the broker does not acknowledge is RETRIED with backoff for as long as it
  takes, never raised: nothing is saved or answered meanwhile and the batch is not acked, so
  its offsets do not move. Raising would lose the batch, because ``take_events`` acks its
  events in a ``finally`` that also runs when the agent dies. A retry may append a record
  twice (same event id, same stream version), which every consumer absorbs. The agent decides and
  saves only while this worker's lease on its partitions holds (``streams/membership.py``); a
  worker that finds it was evicted abandons the batch, unacknowledged, to the partitions' next owner.
- ``project`` consumes the events topic and feeds ``ProjectionRuntime`` in batches.
- ``trail_rejections`` consumes refused commands for the compliance trail.

Every agent reports into ``Metrics`` (batch sizes and latency, parked records, rebalances); a
timer measures the projections' lag on the partitions this worker holds (``LAG_SAMPLE_INTERVAL_S``).
Another (``TAIL_CHECK_INTERVAL_S``) hands the consumer's position on each source partition to the
projection runtime, which reads back records the stream skipped at a partition's tail.

Processing guarantee is at-least-once (never exactly-once): every step is idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, TypeVar, cast

import faust
from faust import streams as faust_streams
from faust.types import EventT, StreamT

from commands.batch import Decided, batch_saves, decide_batch, save_index, save_state
from commands.handler import Result, Stores
from domain import personal
from domain.decider import media_ids_of
from domain.envelope import CommandEnvelope, Outcome
from domain.errors import ErrorCode
from domain.media import media_ref_key
from infra.kafka.codec import Headers, decode_command, encode_event, encode_rejection
from infra.security.shredding import KeyRing, SealedMediaRefs, seal
from infra.settings import WORKER_TABLES, Settings
from infra.worker_metrics import LagSample
from streams.batching import BatchingStream
from streams.idempotent import ParleyApp, abandon
from streams.membership import Membership, Standing
from streams.runtime import DeadLetters, ProjectionRuntime, Record

log = logging.getLogger("parley.worker")

# Commands decided together: as many as arrive within a few milliseconds of the first, at most this many.
DECIDE_BATCH = 500
DECIDE_WITHIN_S = 0.005
# The producer's batch per partition (Faust's default is 16 KiB): an aggregate record can be larger,
# and a record that does not fit waits until the request in flight is answered.
PRODUCER_BATCH_BYTES = 512 * 1024
# Aggregate records the decide agent keeps decoded between batches (a conversation's record with
# its 64 recent outcomes is about 50 KB of Python objects, so at most ~54 MB).
RECORDS_CACHED = 1024
# How often the projections' lag is measured (one end-offsets request and one positions read).
LAG_SAMPLE_INTERVAL_S = 10.0
# How often the consumer's positions are compared with what the projections applied: a partition
# whose tail the stream skipped is read back after two checks in a row find it stuck.
TAIL_CHECK_INTERVAL_S = 3.0

# A record for the log: topic, key, value, headers.
Outgoing = tuple[Any, bytes, bytes, Headers]
T = TypeVar("T")


@contextmanager
def _as_current(event: EventT[bytes]) -> Iterator[None]:
    """Make ``event`` Faust's current event, which decides the partition of table writes."""
    token = faust_streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust_streams._current_event.reset(token)


@dataclass(frozen=True)
class _ChangelogRecord:
    partition: int
    key: str
    value: bytes
    headers: Any


class TableKV:
    """A Faust table as the handler's key-value port.

    A ``put`` writes the table's store at once and keeps the changelog record, encoded, for
    ``send_changelog``, which sends every kept record and raises unless the broker acknowledged them
    all. Faust's own path for a table write (``Table.__setitem__``) hands the record to the
    producer's buffer, whose background task logs a failed send and drops it, and the producer's
    ``flush`` returns whether or not its records were acknowledged: a batch could be answered on
    state its changelog lacks. As with Faust, the record goes to the partition of the current event
    (the command whose write it is), and its acknowledgement moves the store's persisted changelog
    offset.

    With ``cached`` > 0 it keeps that many of the values it read or wrote last, decoded: the decide
    agent reads a busy aggregate's record (state and recent outcomes, several KB of JSON) in every
    batch, and this worker is the only writer of its partitions' keys, so a value it put is what the
    table holds. Only a table recovery changes the table otherwise, and it runs inside a rebalance:
    the cache is valid for one consumer generation (``valid_for``)."""

    def __init__(self, table: Any, cached: int = 0) -> None:
        self._table = table
        self._capacity = cached
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._generation: int | None = None
        self._unsent: list[_ChangelogRecord] = []

    def valid_for(self, generation: int) -> None:
        """Forget the cached values if the consumer generation changed since they were read."""
        if generation != self._generation:
            self._cache.clear()
            self._generation = generation

    def get(self, key: str) -> dict[str, Any] | None:
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return dict(cached)
        # One read of the table's store. ``table.get`` reads it twice (``key in data``, then
        # ``data[key]``), each time looking the key up in RocksDB and, for a key not seen yet,
        # in every partition's database; a miss (every new command's outcome) paid that twice.
        try:
            value = self._table.data[key]
        except KeyError:
            return None
        if value is None:
            return None
        self._keep(key, value)
        return dict(value)

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Write the store now; the changelog record, encoded now, waits for ``send_changelog``."""
        table = self._table
        partition = table.partition_for_key(key)  # the current event's; Faust raises if there is none
        if partition is None:
            raise RuntimeError(f"table {table.name}: its writes take the partition of the current event")
        encoded, headers = table.changelog_topic.prepare_value(value, table.value_serializer)
        table.data[key] = value
        self._unsent.append(_ChangelogRecord(partition, key, encoded, headers))
        self._keep(key, dict(value))

    @property
    def unsent(self) -> int:
        """Changelog records put and not yet acknowledged."""
        return len(self._unsent)

    async def send_changelog(self) -> None:
        """Send the changelog record of every put since the last acknowledged call, and wait for all
        their acknowledgements. On an error every record stays, so a retry sends them all again (a
        record sent twice is the same key and value, and recovery keeps the last of a key)."""
        if not self._unsent:
            return
        table = self._table
        topic = table.changelog_topic
        acks = []
        for record in self._unsent:
            acks.append(
                await topic.send(
                    key=record.key,
                    value=record.value,
                    partition=record.partition,
                    headers=record.headers or None,
                    key_serializer=table.key_serializer,
                    value_serializer="raw",
                    callback=table._on_changelog_sent,  # moves the store's persisted changelog offset
                )
            )
        await asyncio.gather(*acks)
        self._unsent.clear()

    def _keep(self, key: str, value: dict[str, Any]) -> None:
        if self._capacity <= 0:
            return
        self._cache[key] = value
        self._cache.move_to_end(key)
        if len(self._cache) > self._capacity:
            self._cache.popitem(last=False)


async def send_changelogs(ports: Sequence[TableKV]) -> None:
    """Send the unsent changelog records of every port at once; wait for all their acknowledgements."""
    await asyncio.gather(*(port.send_changelog() for port in ports))


class Replies(Protocol):
    async def publish(self, outcomes: Sequence[Outcome]) -> None:
        """Send each outcome to the gateway that awaits it (``reply_to``), the batch at once."""
        ...


class Metrics(Protocol):
    """What the agents report (infra/worker_metrics.py serves it to Prometheus)."""

    def observe_decide(self, size: int, ok: int, refused: int, seconds: float) -> None: ...

    def fenced(self, count: int) -> None: ...

    def observe_project(self, agent: str, size: int, seconds: float) -> None: ...

    def dead_lettered(self, source_topic: str, reason: str) -> None: ...

    def rebalance_started(self) -> None: ...

    def rebalance_ended(self, seconds: float) -> None: ...

    def set_assignment(self, partitions_by_topic: dict[str, int]) -> None: ...

    def set_lag(self, samples: Iterable[LagSample], at: float) -> None: ...


@dataclass
class WorkerServices:
    projections: ProjectionRuntime
    dead_letters: DeadLetters
    replies: Replies
    heartbeat: Callable[[], Awaitable[None]]
    # Every projection's lag on every partition of its source topics (this worker reports its own).
    lag: Callable[[], Awaitable[Sequence[LagSample]]]
    sweep_media: Callable[[], Awaitable[int]]  # removes the objects of expired uploads and deleted media
    keys: KeyRing  # the users' data keys: personal fields are sealed under them before they are appended


class TopicDeadLetters:
    """Parks records in the dead-letter topic with where they came from and why, and counts them."""

    def __init__(self, topic: Any, metrics: Metrics) -> None:
        self._topic = topic
        self._metrics = metrics

    async def park(self, source_topic: str, partition: int, offset: int, value: bytes, reason: str) -> None:
        headers = [
            ("source_topic", source_topic.encode()),
            ("source_partition", str(partition).encode()),
            ("source_offset", str(offset).encode()),
            ("reason", reason[:1000].encode()),
        ]
        await (await self._topic.send(key=source_topic.encode(), value=value, headers=headers))
        self._metrics.dead_lettered(source_topic, reason)


class RebalanceSensor(faust.Sensor):
    """Counts the consumer group's rebalances and how long each took (including table recovery)."""

    def __init__(self, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._metrics = metrics

    def on_rebalance_start(self, app: Any) -> dict[str, Any]:
        self._metrics.rebalance_started()
        return {"time_start": time.monotonic()}

    def on_rebalance_end(self, app: Any, state: dict[str, Any]) -> None:
        self._metrics.rebalance_ended(time.monotonic() - state.get("time_start", time.monotonic()))


ServiceFactory = Callable[[faust.App, DeadLetters], Awaitable[WorkerServices]]


def create_app(settings: Settings, worker_dir: str, build_services: ServiceFactory, metrics: Metrics) -> faust.App:
    """Build the Faust app. Services (clients) are built lazily inside the worker's event loop."""
    brokers = [f"kafka://{h.strip()}" for h in settings.kafka_bootstrap.split(",") if h.strip()]
    app = ParleyApp(
        settings.worker_id,
        broker=brokers,
        store=settings.table_store,
        datadir=worker_dir,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        topic_disable_leader=True,
        processing_guarantee="at_least_once",
        web_enabled=False,
        broker_session_timeout=settings.kafka_session_timeout_s,
        broker_heartbeat_interval=settings.kafka_heartbeat_s,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_max_batch_size=PRODUCER_BATCH_BYTES,
        # A rebalance or a shutdown waits for the batches in flight before it closes the tables
        # they read and write: a batch never reads a table whose partitions were just closed.
        stream_wait_empty=True,
        table_standby_replicas=0,
        Stream=BatchingStream,  # a batch's window opens with its first event: no ticks while idle
    )
    app.fetch_max_wait_ms = settings.kafka_fetch_max_wait_ms
    membership = app.membership = Membership(settings.kafka_session_timeout_s)
    app.sensors.add(RebalanceSensor(metrics))
    holder: dict[str, WorkerServices] = {}
    lock = asyncio.Lock()

    def raw_topic(name: str, partitions: int) -> Any:
        """A topic of undecoded bytes: the codec (infra/kafka/codec.py) decodes, not Faust."""
        return app.topic(
            name, key_type=bytes, value_type=bytes, value_serializer="raw", key_serializer="raw", partitions=partitions
        )

    commands_topic = raw_topic(settings.commands_topic, settings.partitions)
    events_topic = raw_topic(settings.events_topic, settings.partitions)
    rejections_topic = raw_topic(settings.rejections_topic, settings.partitions)
    refusals_topic = raw_topic(settings.refusals_topic, settings.partitions)
    dead_letter_topic = raw_topic(settings.dead_letter_topic, 1)

    async def services() -> WorkerServices:
        if "s" not in holder:
            async with lock:
                if "s" not in holder:
                    holder["s"] = await build_services(app, TopicDeadLetters(dead_letter_topic, metrics))
        return holder["s"]

    tables = {
        name: app.Table(name, default=None, partitions=settings.partitions, key_type=str, value_type=None)
        for name in WORKER_TABLES
    }
    records = TableKV(tables["aggregates"], cached=RECORDS_CACHED)
    index_table = TableKV(tables["messages"])
    outcome_table = TableKV(tables["outcomes"])
    stores = Stores(aggregates=records, messages=index_table, outcomes=outcome_table)

    async def decide_batch_of(batch: Sequence[EventT[bytes]]) -> None:
        """Decode, decide in order, append every event at once, wait once, save, reply."""
        started = time.perf_counter()
        generation = app.consumer_generation_id
        records.valid_for(generation)  # a rebalance may have recovered the tables since the last batch
        # Fetched under an earlier generation: the rebalance since then seeks back, so they come again.
        earlier = [e for e in batch if e.message.generation_id not in (None, generation)]
        if earlier:
            abandon(earlier, app.consumer)
            batch = [e for e in batch if e.message.generation_id in (None, generation)]
        commands: list[CommandEnvelope] = []
        sources: list[EventT[bytes]] = []
        undecodable: list[tuple[EventT[bytes], str]] = []
        for event in batch:
            try:
                commands.append(decode_command(event.value))
                sources.append(event)
            except Exception as exc:
                log.error("undecodable command parked in the dead-letter topic: %s", exc)
                undecodable.append((event, f"undecodable: {exc!r}"))
        if undecodable:
            await _until_acknowledged(
                f"parking {len(undecodable)} undecodable commands", lambda: _park_all(undecodable)
            )
        if not commands:
            return
        keyring = (await services()).keys
        subjects = {s for s in (personal.sealing_subject(c) for c in commands) if s is not None}
        subjects |= _uploaders(commands) | {c.actor_id for c in commands if c.actor_id is not None}
        keys = await _until_acknowledged(
            f"loading {len(subjects)} data keys", lambda: keyring.data_keys(subjects, create=True)
        )
        # This batch's view of the tables: media filenames sealed under their uploaders' keys.
        batch_stores = Stores(stores.aggregates, SealedMediaRefs(stores.messages, keys), stores.outcomes)
        t_decode = time.perf_counter()
        # No await from here to the end of ``decide_batch``: the tables are read while the lease holds.
        if not await _still_single_writer(generation, sources, "deciding"):
            return

        # A table reads and writes the partition of the current event: the command's own, where every
        # key it names lives (a read elsewhere would look in every partition this worker holds).
        def within(i: int) -> AbstractContextManager[None]:
            return _as_current(sources[i])

        decided = decide_batch(
            commands, batch_stores, lambda result: _encode(result, keys), lambda c: _erased_actor(c, keys), within
        )
        t_decide = time.perf_counter()
        # Crypto-shredding: a user's key is destroyed before their UserErased is in the log. A crash
        # in between re-decides the command and destroys the (already destroyed) key again.
        for erased in [e for item in decided for e in item.result.events if e.type == "UserErased"]:
            user_id = str(erased.payload["user_id"])
            await _until_acknowledged(f"destroying the data key of {user_id}", partial(keyring.erase, user_id))
        await _until_acknowledged(f"appending a batch of {len(decided)} commands", lambda: _append_all(decided))
        t_append = time.perf_counter()

        saves = batch_saves(decided)
        if not await _still_single_writer(generation, sources, "saving"):
            return
        if saves.index:
            save_index(saves, batch_stores, within)
            await _until_acknowledged("saving the message index of a batch", index_table.send_changelog)
        save_state(saves, batch_stores, within)
        # The table writes are durable before anyone hears of the outcome: a worker that takes the
        # partition over (this one stopped or died) recovers state that includes every answered command.
        await _until_acknowledged("saving the state of a batch", lambda: send_changelogs((records, outcome_table)))
        if membership.standing(generation) is not Standing.FRESH:
            log.warning(
                "the state of a batch of %d commands was acknowledged after this worker's lease lapsed; "
                "if its partitions moved meanwhile, their next owner may read it after its own",
                len(decided),
            )
        t_save = time.perf_counter()
        await _reply([item.result.outcome for item in decided if item.command.reply_to])
        done = time.perf_counter()
        ok = sum(1 for item in decided if item.result.outcome.ok)
        metrics.observe_decide(len(decided), ok, len(decided) - ok, done - started)
        log.info(
            "decided %d commands (%d ok, %d refused) in %.1f ms: decode %.1f, decide %.1f, append %.1f, "
            "save %.1f, reply %.1f",
            len(decided),
            ok,
            len(decided) - ok,
            (done - started) * 1000,
            (t_decode - started) * 1000,
            (t_decide - t_decode) * 1000,
            (t_append - t_decide) * 1000,
            (t_save - t_append) * 1000,
            (done - t_save) * 1000,
        )
        for item in decided if log.isEnabledFor(logging.DEBUG) else ():
            log.debug(
                "decided %s: %s",
                item.command.type,
                "ok" if item.result.outcome.ok else item.result.outcome.error_code,
                extra={
                    "command_id": item.command.command_id,
                    "stream_id": item.command.aggregate_id,
                    "correlation_id": item.command.correlation_id,
                    "type": item.command.type,
                    "events": [e.event_id for e in item.result.events],
                },
            )

    async def _still_single_writer(generation: int, events: Sequence[EventT[bytes]], what: str) -> bool:
        """Whether this worker still holds the batch's partitions (``streams/membership.py``); waits
        while it cannot tell. If it lost them, the batch is abandoned: not saved, not answered, not
        acknowledged, so their next owner reads it again."""
        if membership.standing(generation) is Standing.FRESH:
            return True
        log.warning("%s a batch waits: no heartbeat answered within the lease", what)
        if await membership.confirm(generation):
            return True
        abandon(events, app.consumer)
        metrics.fenced(len(events))
        log.warning(
            "this worker lost its partitions before %s a batch of %d commands; abandoned to their next owner",
            what,
            len(events),
        )
        return False

    async def _until_acknowledged(what: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run ``attempt`` until the broker acknowledges it, with backoff, for as long as it takes.

        Nothing is saved or answered meanwhile, and the batch's offsets do not move. Letting the
        error out instead would lose the batch: ``take_events`` acks its events in a ``finally``,
        which runs when the agent's loop is left by an exception too. A retry may append some
        records twice; every consumer is idempotent on the event ids."""
        delay = 0.2
        while True:
            try:
                return await attempt()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s failed (%r); retrying in %.1fs", what, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _park_all(undecodable: Sequence[tuple[EventT[bytes], str]]) -> None:
        dead_letters = (await services()).dead_letters
        for event, reason in undecodable:
            message = event.message
            await dead_letters.park(settings.commands_topic, message.partition, message.offset, event.value, reason)

    def _erased_actor(command: CommandEnvelope, keys: Mapping[str, bytes | None]) -> tuple[ErrorCode, str] | None:
        """An erased user's command is refused, whatever the gateway let through (its tokens were
        valid until the erasure, and a gateway may miss the notice that disconnects them)."""
        if command.actor_id is not None and command.actor_id in keys and keys[command.actor_id] is None:
            return "unauthorized", "this account is erased"
        return None

    def _uploaders(commands: Sequence[CommandEnvelope]) -> set[str]:
        """The uploaders of the media the commands name (their refs' filenames are sealed)."""
        found: set[str] = set()
        for command in commands:
            for media_id in media_ids_of(command):
                ref = stores.messages.get(media_ref_key(media_id))
                if ref is not None:
                    found.add(str(ref["uploader_id"]))
        return found

    def _encode(result: Result, keys: dict[str, bytes | None]) -> list[Outgoing]:
        """The records a result appends, personal fields sealed; run inside the batch's per-command guard."""
        records: list[Outgoing] = [(events_topic, *encode_event(seal(event, keys))) for event in result.events]
        if result.rejection is not None:
            records.append((rejections_topic, *encode_rejection(result.rejection)))
        return records

    async def _append_all(decided: Sequence[Decided[Outgoing]]) -> None:
        """Send every event and rejection of the batch without waiting, then wait once for all acks."""
        pending = []
        for item in decided:
            for topic, key, value, headers in item.records:
                # ``send`` only hands the record to the producer; the future it returns is the ack.
                pending.append(await topic.send(key=key, value=value, headers=headers))
        await asyncio.gather(*pending)

    async def _reply(outcomes: list[Outcome]) -> None:
        if not outcomes:
            return
        try:
            await (await services()).replies.publish(outcomes)
        except Exception:  # the gateways time out; a retry with the command_id gets these outcomes
            log.warning("%d outcomes not delivered", len(outcomes), exc_info=True)

    @app.agent(commands_topic, name="decide")
    async def decide(stream: StreamT[bytes]) -> None:
        async for batch in cast(Any, stream).take_events(DECIDE_BATCH, within=DECIDE_WITHIN_S):
            await decide_batch_of(batch)

    @app.agent(events_topic, name="project")
    async def project(stream: StreamT[bytes]) -> None:
        async for batch in cast(Any, stream).take_events(500, within=0.01):
            records = [Record(e.message.partition, e.message.offset, e.value) for e in batch]
            started = time.perf_counter()
            await (await services()).projections.events_batch(records)
            metrics.observe_project("project", len(records), time.perf_counter() - started)

    @app.agent(rejections_topic, name="trail-rejections")
    async def trail_rejections(stream: StreamT[bytes]) -> None:
        async for batch in cast(Any, stream).take_events(500, within=0.2):
            records = [Record(e.message.partition, e.message.offset, e.value) for e in batch]
            started = time.perf_counter()
            await (await services()).projections.rejections_batch(records, settings.rejections_topic)
            metrics.observe_project("trail-rejections", len(records), time.perf_counter() - started)

    @app.agent(refusals_topic, name="trail-refusals")
    async def trail_refusals(stream: StreamT[bytes]) -> None:
        async for batch in cast(Any, stream).take_events(500, within=0.2):
            records = [Record(e.message.partition, e.message.offset, e.value) for e in batch]
            started = time.perf_counter()
            await (await services()).projections.rejections_batch(records, settings.refusals_topic)
            metrics.observe_project("trail-refusals", len(records), time.perf_counter() - started)

    async def heartbeat() -> None:
        # Ready = a consumer assignment exists, no rebalance is under way and tables are recovered.
        recovery = getattr(app.tables, "recovery", None)
        recovered = recovery is None or recovery.completed.is_set()
        if not app.rebalancing and recovered and app.consumer.assignment():
            try:
                await (await services()).heartbeat()
            except Exception as exc:  # Redis is down: /ready says so; a timer that raises would crash the worker
                log.warning("liveness not reported: %r", exc)

    app.timer(interval=1.0)(heartbeat)  # readiness shows within a second of the assignment

    async def sweep_media() -> None:
        try:
            await (await services()).sweep_media()
        except Exception:  # the next pass retries the same objects (its cursor did not move)
            log.warning("media sweep failed", exc_info=True)

    app.timer(interval=settings.media_sweep_interval_s)(sweep_media)

    source_topics = {settings.events_topic, settings.rejections_topic, settings.refusals_topic}

    async def sample_lag() -> None:
        """The lag of every projection on the partitions of its sources that this worker holds."""
        assigned = app.consumer.assignment() if not app.rebalancing else set()
        held = {(tp.topic, tp.partition) for tp in assigned}
        by_topic: dict[str, int] = {}
        for topic, _ in held:
            by_topic[topic] = by_topic.get(topic, 0) + 1
        metrics.set_assignment(by_topic)
        if not any(topic in source_topics for topic, _ in held):
            metrics.set_lag((), time.time())
            return
        try:
            samples = await (await services()).lag()
        except Exception as exc:  # a measurement only: the next one will tell
            log.warning("projection lag not measured: %r", exc)
            return
        metrics.set_lag([s for s in samples if (s.topic, s.partition) in held], time.time())

    app.timer(interval=LAG_SAMPLE_INTERVAL_S)(sample_lag)

    async def read_back_tails() -> None:
        """Records the stream skipped at the tail of a partition: nothing later reveals them."""
        recovery = getattr(app.tables, "recovery", None)
        settled = not app.rebalancing and (recovery is None or recovery.completed.is_set())
        assigned = app.consumer.assignment() if settled else set()  # the agents wait for both
        fetched: dict[str, dict[int, int]] = {topic: {} for topic in source_topics}
        for tp in assigned:
            if tp.topic in fetched:
                try:
                    position = await asyncio.wait_for(app.consumer.position(tp), TAIL_CHECK_INTERVAL_S)
                except Exception as exc:  # the next check asks again
                    log.debug("position of %s unknown: %r", tp, exc)
                    continue
                if position is not None:
                    fetched[tp.topic][tp.partition] = position
        runtime = (await services()).projections
        for topic, positions in fetched.items():
            try:
                # A rebalance may have begun while the positions were asked for: then nothing is held.
                await runtime.read_back_tails(topic, {} if app.rebalancing else positions)
            except Exception:  # a timer that raises would crash the worker; the next check retries
                log.warning("tail of %s not checked", topic, exc_info=True)

    app.timer(interval=TAIL_CHECK_INTERVAL_S)(read_back_tails)
    return app
