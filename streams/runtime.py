"""What the worker's agents do with a decoded record, behind the Faust plumbing in `streams.app`.

Failure policy (never log-and-continue, which would move the offset past an event never
applied): a record that cannot be decoded is parked in the dead-letter topic at once; a
store that is down is retried with backoff for as long as it takes (the offset does not
move meanwhile); a projection that raises on a well-formed event is retried a few times
and then parked, loudly. That loop is ``projections.runner.Projector``, which a rebuild runs
too; this module adds what only the live agent does: the audit trail, pushes, the order of
the stores, retrying a store that is down, and the applied-versions notification.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol, TypeVar

from domain.conversation import conversation_in
from domain.envelope import EventEnvelope, Rejection
from domain.keys import keys_user_in
from infra.kafka.codec import decode_event, decode_rejection
from infra.logging import correlation_id_var, message_type_var
from infra.mongo.audit_trail import AUDIT
from infra.mongo.documents import DocumentStore, Positions, ProjectionRegistry, refusals
from infra.settings import Settings
from projections.base import Doc, DocumentProjection, OnEvent
from projections.catalog import DOCUMENT_PROJECTIONS
from projections.pushes import Push, keys_pushes, pushes_for
from projections.runner import POISON, Decoded, Item, Opener, Projector, Store, next_offsets
from projections.runner import DeadLetters as DeadLetters  # the Faust app and tests name them from here
from projections.runner import Record as Record
from projections.search import SEARCH

log = logging.getLogger("parley.worker")
T = TypeVar("T")

PUSH_ATTEMPTS = 8  # ~30 s of backoff
ANNOUNCE_TIMEOUT_S = 1.0  # a notification never holds up the next batch for longer

Apply = Callable[[Sequence[Item]], Awaitable[int]]


class Pusher(Protocol):
    async def push_all(self, pushes: Sequence[Push]) -> None:
        """Deliver ``pushes`` in this order (raises if they may not all have gone out)."""
        ...


class AppliedVersions(Protocol):
    """Tells the gateways how far the read models got (their read-your-writes waits end on it)."""

    async def publish(self, versions: Mapping[str, int]) -> None: ...


class ConversationPartners(Protocol):
    """Everyone who shares a conversation with a user, from the conversations read model
    (``infra.mongo.partners.MongoConversationPartners``): who gets a user's ``keys:changed``."""

    async def of(self, user_id: str) -> set[str]: ...


class AuthzGenerations(Protocol):
    """Moves the generations that cached media download decisions were made under
    (``infra.authz_cache.RedisAuthzCache``)."""

    async def forget_conversation(self, conversation_id: str) -> None: ...

    async def forget_media(self, media_id: str) -> None: ...


class DataKeys(Opener, Protocol):
    """The users' data keys (infra/security/shredding.py's ``KeyRing``)."""

    async def erased_among(self, user_ids: Collection[str]) -> set[str]: ...


class RedactingStore(Store, Protocol):
    """A store whose documents can be redacted for an erased user (the search indexes)."""

    async def redact(self, user_id: str) -> int: ...


class ErasureEffects(Protocol):
    """What an erasure removes beyond the views: objects, caches; and who is told (infra/erasure.py)."""

    async def erased(self, user_id: str) -> None: ...


class RecordSource(Protocol):
    """Reads records back from the log: ``[start, end)`` of one partition of a topic."""

    async def read(self, topic: str, partition: int, start: int, end: int) -> list[Record]: ...


class SavedPositions(Protocol):
    async def load(self, name: str, topic: str) -> dict[int, int]: ...


@dataclass
class Holes:
    """Records that never reached this worker, read back from the log before they are needed.

    The consumer can deliver a batch that starts past a record nobody processed (a batch cancelled
    by a shutdown is acked all the same by Faust's ``take_events``; a rebalance can commit past a
    skipped record), and one with a record missing inside it: around a rebalance, a stream skips
    the records it fetched under the previous generation while it takes those fetched again under
    the new one, and the fetcher drops records below an offset it already passed. The runtime
    knows better: per partition, the offset after the last record it applied, and the position
    saved by whichever worker applied the partition last. A batch that starts beyond both is
    preceded by what lies between; every offset missing inside a batch is read too; the batch is
    then applied in log order, each offset once. So no event is ever left out of the read models,
    and the trail records each partition in log order. Everything downstream is idempotent, so
    reading a little too much (another worker applied it meanwhile) costs time, never correctness.

    A record skipped at the tail of a partition has no later record to reveal it: ``stalled``
    finds those, from the consumer's position on each partition it holds (see
    ``ProjectionRuntime.read_back_tails``).
    """

    source: RecordSource
    positions: SavedPositions
    _next: dict[tuple[str, int], int] = field(default_factory=dict)
    # What ``stalled`` saw last time, per partition: the offset expected next.
    _seen: dict[tuple[str, int], int] = field(default_factory=dict)

    async def complete(self, topic: str, position_name: str, records: Sequence[Record]) -> list[Record]:
        by_partition: dict[int, dict[int, Record]] = {}
        for record in records:
            by_partition.setdefault(record.partition, {}).setdefault(record.offset, record)
        ordered = {p: sorted(got) for p, got in by_partition.items()}
        suspect = {p for p, offsets in ordered.items() if offsets[0] > self._next.get((topic, p), -1)}
        saved = await _retry_transient(partial(self.positions.load, position_name, topic)) if suspect else {}
        for partition, offsets in sorted(ordered.items()):
            got = by_partition[partition]
            gaps = [(a + 1, b, "inside") for a, b in itertools.pairwise(offsets) if b > a + 1]
            if partition in suspect:
                expected = max(self._next.get((topic, partition), 0), saved.get(partition, 0))
                if offsets[0] > expected:
                    gaps.insert(0, (expected, offsets[0], "before"))
            for start, end, where in gaps:
                log.warning(
                    "records %s:%d at offsets %d..%d (%s a batch) never reached this worker: read back from the log",
                    topic,
                    partition,
                    start,
                    end - 1,
                    where,
                )
                for record in await _retry_transient(partial(self.source.read, topic, partition, start, end)):
                    got.setdefault(record.offset, record)
        return [by_partition[p][o] for p in sorted(by_partition) for o in sorted(by_partition[p])]

    def applied(self, topic: str, records: Sequence[Record]) -> None:
        for record in records:
            key = (topic, record.partition)
            self._next[key] = max(self._next.get(key, 0), record.offset + 1)

    async def stalled(self, topic: str, position_name: str, fetched: Mapping[int, int]) -> dict[int, tuple[int, int]]:
        """The partitions whose records below the consumer's position (``fetched``) were not all
        applied, and that made no progress since the previous call: ``{partition: (start, end)}``.

        The consumer fetched past them, so the stream will never bring them; a partition still
        moving is left to its stream (its records may be in the stream's buffer)."""
        unknown = [p for p, end in fetched.items() if end > 0 and (topic, p) not in self._next]
        if unknown:
            saved = await _retry_transient(partial(self.positions.load, position_name, topic))
            for p in unknown:  # what any worker applied counts (the positions follow the stores)
                if p in saved:
                    self._next[(topic, p)] = saved[p]
        for key in [k for k in self._seen if k[0] == topic and k[1] not in fetched]:
            del self._seen[key]  # a partition not held now starts over when it comes back
        out: dict[int, tuple[int, int]] = {}
        for p, end in sorted(fetched.items()):
            key = (topic, p)
            expected = self._next.get(key, 0)
            if expected >= end:
                self._seen.pop(key, None)
                continue
            if self._seen.get(key) == expected:
                out[p] = (expected, end)
            self._seen[key] = expected
        return out


class Trail(Protocol):
    async def append(self, topic: str, records: Sequence[tuple[int, int, EventEnvelope | Rejection]]) -> int: ...


@dataclass
class ProjectionRuntime:
    """Applies batches of events to every read model, the audit trail and pushes."""

    settings: Settings
    registry: ProjectionRegistry
    positions: Positions
    database: Any  # AsyncDatabase
    trail: Trail
    pusher: Pusher
    dead_letters: DeadLetters
    # The catalogue's order matters: the last one is applied after the others (see events_batch).
    projections: Mapping[str, DocumentProjection] = field(default_factory=lambda: dict(DOCUMENT_PROJECTIONS))
    applied: AppliedVersions | None = None
    # The search indexes (infra/search_store.py, through their aliases); None: no search projection.
    search: RedactingStore | None = None
    partners: ConversationPartners | None = None  # default: the conversations read model of ``database``
    authz: AuthzGenerations | None = None  # cached media download decisions, invalidated here
    # Reads back records the consumer skipped (see Holes); None: batches are taken as delivered.
    log_source: RecordSource | None = None
    # Opens sealed personal fields; None: events are taken as stored (tests of logs without any).
    keys: DataKeys | None = None
    erasure: ErasureEffects | None = None  # objects, caches and gateways of an erased user
    _stores: dict[str, DocumentStore] = field(default_factory=dict)
    _holes: Holes | None = None
    # One batch at a time per source topic: the agent's, or a read-back of a partition's tail.
    _busy: dict[str, asyncio.Lock] = field(default_factory=dict)

    def _lock(self, topic: str) -> asyncio.Lock:
        return self._busy.setdefault(topic, asyncio.Lock())

    def _position_name(self, topic: str) -> str:
        """The position the worker that applied a partition last left behind (see Holes)."""
        if topic != self.settings.events_topic:
            return AUDIT
        names = list(self.projections)  # their positions are saved together; none: the trail's own
        return names[-1] if names else AUDIT

    def _gaps(self) -> Holes | None:
        """What the runtime knows of skipped records; None without a log to read them back from."""
        if self._holes is None and self.log_source is not None:
            self._holes = Holes(self.log_source, self.positions)
        return self._holes

    async def _complete(self, topic: str, records: Sequence[Record]) -> Sequence[Record]:
        holes = self._gaps()
        return records if holes is None else await holes.complete(topic, self._position_name(topic), records)

    async def read_back_tails(self, topic: str, fetched: Mapping[int, int], limit: int = 500) -> int:
        """Applies the records the consumer fetched past on a partition but that never reached the
        agent, when nothing later on that partition came to reveal them (see Holes).

        ``fetched``: the consumer's position on each partition of ``topic`` it holds. Called on a
        timer; a partition is read back on the second call in a row that finds it stuck at the
        same offset. Returns how many records were read back (at most ``limit`` a partition)."""
        holes = self._gaps()
        if holes is None or self.log_source is None or self._lock(topic).locked():
            return 0  # (locked: the agent is at work, so nothing is stuck now)
        stalled = await holes.stalled(topic, self._position_name(topic), fetched)
        read = 0
        for partition, (start, end) in stalled.items():
            end = min(end, start + limit)
            log.warning(
                "records %s:%d at offsets %d..%d (a partition's tail) never reached this worker: read back",
                topic,
                partition,
                start,
                end - 1,
            )
            records = await _retry_transient(partial(self.log_source.read, topic, partition, start, end))
            if topic == self.settings.events_topic:
                await self.events_batch(records)
            else:
                await self.rejections_batch(records, topic)
            read += len(records)
        return read

    def _done(self, topic: str, records: Sequence[Record]) -> None:
        if self._holes is not None:
            self._holes.applied(topic, records)

    async def _store(self, name: str) -> DocumentStore:
        collection = await self.registry.live_collection(name)
        store = self._stores.get(name)
        if store is None or store.collection.name != collection:
            store = DocumentStore(self.database[collection], self.projections[name])
            self._stores[name] = store
        return store

    @property
    def runner(self) -> Projector:
        """The loop a rebuild runs too (same decoding, poison and parking), with stores retried forever."""
        return Projector(
            self.settings.events_topic, decode_event, self.dead_letters, transient=_retry_transient, opener=self.keys
        )

    async def events_batch(self, records: Sequence[Record]) -> None:
        topic = self.settings.events_topic
        async with self._lock(topic):
            records = await self._complete(topic, records)
            await self._events_batch(records)
            self._done(topic, records)

    async def _events_batch(self, records: Sequence[Record]) -> None:
        topic = self.settings.events_topic
        runner = self.runner
        decoded = await runner.decode_batch(records)
        if not decoded.stored:
            return
        pushed: dict[str, list[Push]] = {}

        def collect(event: EventEnvelope, docs: Mapping[str, Doc | None]) -> None:
            pushed[event.event_id] = pushes_for(event, docs.get(_conversation_of(event)))

        # The audit trail is no read model that an ack vouches for: it is written alongside the
        # views, and the batch's positions are saved once both are done (a crash redoes both).
        trail = asyncio.create_task(runner.guarded("audit", decoded.stored, self._trail_appender(topic)))
        try:
            events = await self._views(runner, decoded, collect)
            applied_by = (*self.projections, *([SEARCH] if self.search is not None else []))

            async def save_positions() -> None:
                await trail
                await _retry_transient(lambda: self.positions.save_all(applied_by, topic, next_offsets(records)))

            async def announce_then_push() -> None:
                await self._announce(events)
                await self._key_pushes(events, pushed)
                await self._push(events, pushed)

            # Every read model holds the batch now: the gateways hear of it at once (their acks
            # wait on it), then the sockets get the pushes, while the positions are saved.
            # Both run to their end before the batch does, whichever fails.
            for outcome in await asyncio.gather(save_positions(), announce_then_push(), return_exceptions=True):
                if isinstance(outcome, BaseException):
                    raise outcome
        finally:
            trail.cancel()  # nothing once it is done; if the views failed, the batch's append is abandoned
            await asyncio.gather(trail, return_exceptions=True)
        for event in events if log.isEnabledFor(logging.DEBUG) else ():
            log.debug(
                "projected %s v%d",
                event.type,
                event.stream_version,
                extra={
                    "event_id": event.event_id,
                    "stream_id": event.stream_id,
                    "correlation_id": event.correlation_id,
                    "type": event.type,
                },
            )

    async def _views(self, runner: Projector, decoded: Decoded, collect: OnEvent) -> list[EventEnvelope]:
        """Apply a decoded batch to every read model and the search indexes; returns its events.

        Independent stores are written concurrently; the last projection of the catalogue
        (conversations) only after the others, so its version vouches for all of them (the search
        indexes included: a search keyed on conversation versions relies on it)."""
        current = decoded.current  # upcast; the trail records them as stored in the log
        names = list(self.projections)
        first, last = names[:-1], names[-1:]
        await asyncio.gather(
            *(runner.guarded(name, current, self._projector(name, None)) for name in first),
            *([runner.project(SEARCH, self.search, current)] if self.search is not None else []),
        )
        for name in last:
            await runner.guarded(name, current, self._projector(name, collect if name == "conversations" else None))
        events = [event for _, event in current]
        await self._erasures(events, decoded.opened)  # before the positions: a crash redoes them
        await self._invalidate(events)  # before the announcement: an answered removal is in force
        return events

    async def _erasures(self, events: Sequence[EventEnvelope], opened: Collection[str]) -> None:
        """Redact the views of the users erased by this batch, and of those whose key this batch used
        but that was destroyed meanwhile: an erasure on another partition may have redacted the views
        before this batch wrote what it opened (the key store is asked after the writes, so one of
        the two redactions comes after them)."""
        erased = {str(e.payload["user_id"]) for e in events if e.type == "UserErased"}
        if self.keys is not None and opened:
            keys = self.keys
            late = await _retry_transient(lambda: keys.erased_among(sorted(set(opened) - erased)))
            if late:
                log.warning("keys of %d users were destroyed while a batch used them: redacting again", len(late))
            erased |= late
        for user_id in sorted(erased):
            await self.redact(user_id)
            if self.erasure is not None and any(
                e.type == "UserErased" and e.payload["user_id"] == user_id for e in events
            ):
                await _retry_transient(partial(self.erasure.erased, user_id))

    async def redact(self, user_id: str) -> None:
        """Redact ``user_id``'s personal data in every view and the search indexes (retried until done)."""
        for name in self.projections:
            store = await _retry_transient(partial(self._store, name))
            changed = await _retry_transient(partial(store.redact, user_id))
            log.info("%s: %d documents of %s redacted", name, changed, user_id, extra={"user_id": user_id})
        if self.search is not None:
            await _retry_transient(partial(self.search.redact, user_id))

    async def _invalidate(self, events: Sequence[EventEnvelope]) -> None:
        """Cached media decisions that a departure, a completed upload or a deletion ends (retried: a
        stale decision must not outlive the answer to the command that changed it)."""
        if self.authz is None:
            return
        authz = self.authz
        for event in events:
            if event.type in ("ParticipantRemoved", "ParticipantLeft"):
                conversation_id = str(event.payload["conversation_id"])
                await _retry_transient(partial(authz.forget_conversation, conversation_id))
            elif event.type in ("MediaUploaded", "MediaDeleted"):
                media_id = str(event.payload["media_id"])
                await _retry_transient(partial(authz.forget_media, media_id))

    async def _announce(self, events: Sequence[EventEnvelope]) -> None:
        """One notification per batch: the highest version of each stream now in every read model."""
        if self.applied is None:
            return
        versions: dict[str, int] = {}
        for event in events:
            versions[event.stream_id] = max(versions.get(event.stream_id, 0), event.stream_version)
        try:
            async with asyncio.timeout(ANNOUNCE_TIMEOUT_S):
                await self.applied.publish(versions)
        except Exception as exc:  # a notification only: waiting acks fall back to one query
            log.warning("applied versions not published: %r", exc)

    async def rejections_batch(self, records: Sequence[Record], topic: str | None = None) -> None:
        """Refused commands (the workers' rejections, or with ``topic`` the gateways' refusals)."""
        topic = topic or self.settings.rejections_topic
        async with self._lock(topic):
            records = await self._complete(topic, records)
            decoded: list[tuple[int, int, EventEnvelope | Rejection]] = []
            for record in records:
                try:
                    decoded.append((record.partition, record.offset, decode_rejection(record.value)))
                except Exception as exc:
                    await self.dead_letters.park(
                        topic, record.partition, record.offset, record.value, f"undecodable: {exc!r}"
                    )
            if decoded:
                await _retry_transient(lambda: self.trail.append(topic, decoded))  # it saves its own positions
            self._done(topic, records)

    def _projector(self, name: str, on_event: OnEvent | None) -> Apply:
        async def apply(items: Sequence[Item]) -> int:
            store = await self._store(name)
            return len((await store.apply([event for _, event in items], on_event)).applied)

        return apply

    def _trail_appender(self, topic: str) -> Apply:
        async def append(items: Sequence[Item]) -> int:
            with refusals():
                return await self.trail.append(topic, [(r.partition, r.offset, event) for r, event in items])

        return append

    async def _key_pushes(self, events: Sequence[EventEnvelope], pushed: dict[str, list[Push]]) -> None:
        """``keys:changed`` of the batch's key directory events, addressed to the user's conversation
        partners as the conversations view shows them now. Computed for every delivery of the event,
        so a redelivery pushes again (at-least-once, like the other pushes)."""
        if self.partners is None:
            from infra.mongo.partners import MongoConversationPartners

            self.partners = MongoConversationPartners(self.database, self.registry)
        partners = self.partners
        for event in events:
            user_id = keys_user_in(event.stream_id)
            if user_id is None:
                continue
            try:
                if not keys_pushes(event, ()):
                    continue
            except POISON:  # an event the views could not apply either (parked): nothing to push
                continue
            try:
                others = await _retry_transient(partial(partners.of, user_id), attempts=PUSH_ATTEMPTS)
            except Exception:  # a notification only: clients also learn of new keys from keys:devices
                log.error("partners of %s unavailable: keys:changed of %s dropped", user_id, event.event_id)
                continue
            pushed[event.event_id] = keys_pushes(event, others)

    async def _push(self, events: Sequence[EventEnvelope], pushed: dict[str, list[Push]]) -> None:
        """At-least-once pushes: events this batch applied push from the view of that moment; events
        that were applied before (a redelivery after a crash) push again from the current view."""
        again = [e for e in events if e.event_id not in pushed and _conversation_of(e)]
        if again and "conversations" in self.projections:
            store = await self._store("conversations")
            ids = list({_conversation_of(e) for e in again})
            docs = {str(d["_id"]): d async for d in store.collection.find({"_id": {"$in": ids}})}
            for event in again:
                try:
                    pushed[event.event_id] = pushes_for(event, docs.get(_conversation_of(event)))
                except POISON:  # an event the views could not apply either (parked): nothing to push
                    continue
        # In the batch's order, so in seq order within each conversation; one round trip for all.
        batch = [push for event in events for push in pushed.get(event.event_id, [])]
        if not batch:
            return
        try:
            await _retry_transient(partial(self.pusher.push_all, batch), attempts=PUSH_ATTEMPTS)
        except Exception:
            # Notifications only: the views have the events, and clients resync by query.
            log.error("%d pushes of a batch dropped after retries", len(batch), exc_info=True)


def _conversation_of(event: EventEnvelope) -> str:
    return conversation_in(event.stream_id) or ""


async def _retry_transient(action: Callable[[], Awaitable[T]], attempts: int | None = None) -> T:
    """Retry what is not poison (a store down, a failover, a timeout) with backoff: forever by default."""
    delay = 0.2
    tries = 0
    while True:
        try:
            return await action()
        except POISON:
            raise
        except Exception as exc:
            tries += 1
            if attempts is not None and tries >= attempts:
                raise
            log.warning("store unavailable (%r); retrying in %.1fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def bind_log_context(correlation_id: str | None, message_type: str | None) -> None:
    correlation_id_var.set(correlation_id)
    message_type_var.set(message_type)


def instance_name(settings: Settings) -> str:
    return settings.instance_id or f"{socket.gethostname()}-{os.getpid()}"
