"""The one loop that turns log records into read-model writes, for the live agent and a rebuild.

decode -> open sealed fields -> upcast -> fold -> one bulk write per store -> positions. The live agent (a few
records at a time, from Faust) and a rebuild (the whole log, from the log reader) both run
it, so they classify the same records as poison under the same policy, and rebuild ==
incremental holds for malformed logs too:

- a record that cannot be decoded, whose sealed personal fields do not open under their key
  (tampered with), or whose event cannot be upcast to today's shape, is parked at once (no
  projection could ever apply it);
- the keys that open a batch's sealed fields are loaded under the caller's ``transient``
  policy: a key store that is down (or a key it does not have) is never taken for an erasure;
- a store that raises something else (down, a failover, a timeout) is retried by the
  caller's ``transient`` policy (the live agent: forever; a rebuild: not at all, it stops);
- a projection that raises one of ``POISON`` on an event is retried a few times, then the
  batch is applied one event at a time and the events that still fail are parked, loudly.

Only the ports are typed here (``typing.Protocol``); the adapters live in ``infra/``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from domain.envelope import EventEnvelope
from domain.upcasting import upcast
from projections.base import Folded, OnEvent

log = logging.getLogger("parley.projections")
T = TypeVar("T")


class StoreRefused(Exception):
    """A store refused a document (too large, invalid): the event behind it is poison.
    Adapters raise it in place of their driver's error, so this module names no driver."""


# What applying an event raises when the event itself is the problem (a projection bug, a
# malformed payload, a document the store refuses): retried a few times, then parked. Anything
# else is a store that is unavailable.
POISON: tuple[type[Exception], ...] = (ValueError, KeyError, TypeError, AttributeError, StoreRefused)
POISON_ATTEMPTS = 3
POISON_BACKOFF_S = 0.2


@dataclass(frozen=True)
class Record:
    """One consumed record: where it came from and its raw value."""

    partition: int
    offset: int
    value: bytes


Item = tuple[Record, EventEnvelope]


class DeadLetters(Protocol):
    async def park(self, source_topic: str, partition: int, offset: int, value: bytes, reason: str) -> None: ...


class Store(Protocol):
    """One projection's documents: fold a batch of events and write the changes in one bulk write."""

    async def apply(self, events: Sequence[EventEnvelope], on_event: OnEvent | None = None) -> Folded: ...


class Transient(Protocol):
    """How a step that fails for a reason outside the event (a store down) is retried."""

    def __call__(self, action: Callable[[], Awaitable[T]], /) -> Awaitable[T]: ...


class Opener(Protocol):
    """Opens the personal fields events carry sealed (infra/security/shredding.py's ``KeyRing``)."""

    async def keys_for(self, events: Sequence[EventEnvelope]) -> Mapping[str, bytes | None]:
        """The keys the events' boxes are sealed under (None: destroyed)."""
        ...

    def open(self, event: EventEnvelope, keys: Mapping[str, bytes | None]) -> EventEnvelope:
        """The event with its box opened; ValueError if it does not open."""
        ...


async def once(action: Callable[[], Awaitable[T]]) -> T:
    """No retry: whatever fails stops the caller."""
    return await action()


@dataclass
class Decoded:
    """A batch after decoding: ``stored`` as in the log (what the audit trail hashes), ``current``
    upcast to today's shapes (what views read). Parked records are in neither."""

    stored: list[Item] = field(default_factory=list)
    current: list[Item] = field(default_factory=list)
    opened: set[str] = field(default_factory=set)  # users whose live data keys opened fields of the batch


@dataclass
class Projector:
    """Decodes, classifies and applies batches of one topic's records; see the module docstring."""

    topic: str
    decode: Callable[[bytes], EventEnvelope]
    dead_letters: DeadLetters
    transient: Transient = once
    backoff_s: float = POISON_BACKOFF_S
    opener: Opener | None = None  # None: events are taken as stored (a log without sealed fields)

    async def decode_batch(self, records: Sequence[Record]) -> Decoded:
        out = Decoded()
        for record in records:
            try:
                event = self.decode(record.value)
            except Exception as exc:  # a record no reader can decode must not block the partition
                await self._park(record, f"undecodable: {exc!r}")
                continue
            out.stored.append((record, event))
        keys: Mapping[str, bytes | None] = {}
        opener = self.opener
        if opener is not None and out.stored:
            events = [event for _, event in out.stored]
            keys = await self.transient(lambda: opener.keys_for(events))
            out.opened = {user for user, key in keys.items() if key is not None}
        for record, event in out.stored:
            try:
                opened = opener.open(event, keys) if opener is not None else event
            except ValueError as exc:  # the trail still records it as stored; no view can read it
                log.error("event %s: sealed fields do not open (%r); parked", event.event_id, exc)
                await self._park(record, f"sealed: {exc!r}")
                continue
            try:
                out.current.append((record, upcast(opened)))
            except ValueError as exc:  # no view can read it; the trail still records it as stored
                log.error("event %s cannot be upcast (%r); parked in the dead-letter topic", event.event_id, exc)
                await self._park(record, f"upcast: {exc!r}")
        return out

    async def project(self, name: str, store: Store, items: Sequence[Item], on_event: OnEvent | None = None) -> int:
        """Apply decoded items to projection ``name``'s store (one bulk write); returns the events applied."""

        async def apply(batch: Sequence[Item]) -> int:
            return len((await store.apply([event for _, event in batch], on_event)).applied)

        return await self.guarded(name, items, apply)

    async def guarded(self, name: str, items: Sequence[Item], apply: Callable[[Sequence[Item]], Awaitable[int]]) -> int:
        """Apply, retrying unavailable stores per ``transient``; park events ``name`` keeps failing on."""
        if not items:
            return 0
        failures = 0
        while True:
            try:
                return await self.transient(lambda: apply(items))
            except POISON as exc:
                failures += 1
                if failures < POISON_ATTEMPTS:
                    await asyncio.sleep(self.backoff_s * failures)
                    continue
                if len(items) > 1:  # find the poison events: the others still get applied
                    applied = 0
                    for item in items:
                        applied += await self.guarded(name, [item], apply)
                    return applied
                record, event = items[0]
                log.error(
                    "projection %s cannot apply event %s (%r); parked in the dead-letter topic",
                    name,
                    event.event_id,
                    exc,
                    extra={"projection": name, "event_id": event.event_id, "correlation_id": event.correlation_id},
                )
                await self._park(record, f"{name}: {exc!r}")
                return 0

    async def _park(self, record: Record, reason: str) -> None:
        await self.dead_letters.park(self.topic, record.partition, record.offset, record.value, reason)


def next_offsets(records: Sequence[Record]) -> dict[int, int]:
    """Per partition, the offset after the last record: the position to save once they are applied."""
    out: dict[int, int] = {}
    for r in records:
        out[r.partition] = max(out.get(r.partition, 0), r.offset + 1)
    return out
