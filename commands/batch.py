"""Deciding a batch of commands at once, as if one at a time.

The decide agent takes commands in batches. Each command is decided, in the order of the
batch, against the state that the batch's earlier commands left, kept in memory by an
:class:`Overlay` over the real stores (Faust tables): a later command of the same aggregate
sees the earlier one's state, message index entries and remembered outcome, so versions
stay gap-free and a command_id repeated inside one batch is answered from memory.

Nothing reaches the real stores here. The caller appends every result's events and
rejections to the log, waits once for all the acknowledgements, and only then calls
:func:`save_index`, waits until those writes are durable, then calls :func:`save_state`
(:func:`batch_saves` computes the writes: each key once, so a busy aggregate's record is written
once per batch, not once per command). So the crash semantics of one command hold for a batch:
events are durable before any state that depends on them, the message index before the records
that answer a redelivered command without deciding it again, and a redelivered batch is
re-decided to identical events.

A command whose decision raises unexpectedly (a bug, not a domain refusal) is refused alone
with ``internal``; its aggregate keeps the state it had before it, and the rest of the batch
is decided. The same holds for a decision whose records cannot be encoded: the caller's
``encode`` runs here, inside that guard, so such a command costs itself alone instead of
failing the append of the whole batch on every retry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

from commands.handler import (
    KeyValue,
    Result,
    Stores,
    apply_result,
    handle,
    recent_key,
    refused,
    remembered,
    stored_outcome,
)
from domain.envelope import CommandEnvelope
from domain.errors import ErrorCode

log = logging.getLogger("parley.worker")

T = TypeVar("T")


class Overlay:
    """A key-value store whose writes stay in memory in front of a base store that is only read.

    The base is read at most once per key: nothing else writes to it while a batch is decided,
    and a read of a Faust table decodes the whole value (a busy aggregate's record is tens of KB,
    read by ``remembered`` and again by ``handle``)."""

    def __init__(self, base: KeyValue) -> None:
        self._base = base
        self._writes: dict[str, dict[str, Any]] = {}
        self._read: dict[str, dict[str, Any] | None] = {}

    def get(self, key: str) -> dict[str, Any] | None:
        if key in self._writes:
            return dict(self._writes[key])
        if key not in self._read:
            self._read[key] = self._base.get(key)
        value = self._read[key]
        return dict(value) if value is not None else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        self._writes[key] = dict(value)


@dataclass(frozen=True)
class Decided(Generic[T]):
    """One command of a batch, what deciding it gave, and its records for the log as ``encode`` made them."""

    command: CommandEnvelope
    result: Result
    records: Sequence[T] = ()


Refuse = Callable[[CommandEnvelope], tuple[ErrorCode, str] | None]
# ``within(i)`` is entered around the reads or writes of the batch's i-th command (a Faust table
# reads and writes the partition of the event that is current: the command's own).
Within = Callable[[int], AbstractContextManager[None]]


def _nowhere(_: int) -> AbstractContextManager[None]:
    return nullcontext()


@overload
def decide_batch(
    commands: Sequence[CommandEnvelope],
    stores: Stores,
    encode: None = None,
    refuse: Refuse | None = None,
    within: Within = _nowhere,
) -> list[Decided[Any]]: ...


@overload
def decide_batch(
    commands: Sequence[CommandEnvelope],
    stores: Stores,
    encode: Callable[[Result], Sequence[T]],
    refuse: Refuse | None = None,
    within: Within = _nowhere,
) -> list[Decided[T]]: ...


def decide_batch(
    commands: Sequence[CommandEnvelope],
    stores: Stores,
    encode: Callable[[Result], Sequence[Any]] | None = None,
    refuse: Refuse | None = None,
    within: Within = _nowhere,
) -> list[Decided[Any]]:
    """Decide ``commands`` in order against ``stores`` plus what the batch itself changed.

    ``encode`` turns a result into what the caller will append (its events and rejection).
    ``refuse`` names commands refused before their aggregate sees them (an erased actor's), with
    the code and message; a command decided before is still answered as it was. ``within(i)`` is
    entered around the i-th command's reads.
    """
    overlay = Stores(
        aggregates=Overlay(stores.aggregates),
        messages=Overlay(stores.messages),
        outcomes=Overlay(stores.outcomes),
    )
    decided: list[Decided[Any]] = []
    for i, command in enumerate(commands):
        with within(i):
            try:
                reason = refuse(command) if refuse is not None and remembered(command, overlay) is None else None
                result = refused(command, overlay, *reason) if reason is not None else handle(command, overlay)
                records = encode(result) if encode is not None else ()
            except Exception as exc:  # a bug must cost this command alone, never the batch
                log.exception(
                    "deciding %s raised; refused as internal",
                    command.type,
                    extra={"command_id": command.command_id, "stream_id": command.aggregate_id},
                )
                result = _internal(command, overlay, exc)
                records = encode(result) if encode is not None else ()
        apply_result(command, result, overlay)
        decided.append(Decided(command, result, records))
    return decided


class _Nothing:
    """A store that holds nothing and keeps nothing."""

    def get(self, key: str) -> dict[str, Any] | None:
        return None

    def put(self, key: str, value: dict[str, Any]) -> None:
        return None


def _internal(command: CommandEnvelope, stores: Stores, exc: Exception) -> Result:
    """The ``internal`` refusal of a command whose decision raised, remembered with its aggregate's outcomes.

    If the aggregate's record is itself what raises (unreadable), the refusal is remembered only
    in the long-term outcomes and the record is left exactly as it was.
    """
    message = f"internal error ({type(exc).__name__})"
    try:
        return refused(command, stores, "internal", message)
    except Exception:
        log.exception(
            "the record of %s is unreadable; refused without touching it",
            command.aggregate_id,
            extra={"command_id": command.command_id, "stream_id": command.aggregate_id},
        )
        return refused(
            command, Stores(aggregates=_Nothing(), messages=_Nothing(), outcomes=_Nothing()), "internal", message
        )


@dataclass(frozen=True)
class Saves:
    """What a decided batch changed, each key once with its value after the batch, per table.

    Each write is ``(i, key, value)``: the batch's ``i``-th command made it last."""

    index: list[tuple[int, str, dict[str, Any]]]  # message index entries (message and media refs)
    records: list[tuple[int, str, dict[str, Any]]]  # aggregate records
    outcomes: list[tuple[int, str, dict[str, Any]]]  # long-term outcomes


def batch_saves(decided: Sequence[Decided[Any]]) -> Saves:
    """The writes that save ``decided``: a key the batch wrote several times (a busy conversation's
    record) is written once, with its last value, and each aggregate record keeps the outcome of
    every command of the batch that it includes, however many (the next command of that aggregate
    trims ``recent`` back to ``RECENT_OUTCOMES``, once these outcomes are saved)."""
    refs: dict[str, tuple[int, dict[str, Any]]] = {}
    records: dict[str, tuple[int, dict[str, Any]]] = {}
    outcomes_of: dict[str, dict[str, Any]] = {}  # aggregate id -> this batch's outcomes by recent key
    outcomes: list[tuple[int, str, dict[str, Any]]] = []
    for i, item in enumerate(decided):
        command, result = item.command, item.result
        if result.repeated:
            continue
        for message_id, ref in result.message_refs.items():
            if ref is not None:
                refs[message_id] = (i, ref)
        stored = stored_outcome(result.outcome)
        outcomes_of.setdefault(command.aggregate_id, {})[recent_key(command)] = stored
        if result.record is not None:
            records[command.aggregate_id] = (i, result.record)
        outcomes.append((i, command.key, stored))
    saved_records = []
    for aggregate_id, (i, record) in records.items():
        # Outcomes already in ``recent`` keep their place; any the record trimmed come back, newest.
        recent = {**record.get("recent", {}), **outcomes_of[aggregate_id]}
        saved_records.append((i, aggregate_id, {**record, "recent": recent}))
    return Saves(index=[(i, key, ref) for key, (i, ref) in refs.items()], records=saved_records, outcomes=outcomes)


def _write(writes: Sequence[tuple[int, str, dict[str, Any]]], store: KeyValue, within: Within) -> None:
    for i, key, value in writes:
        with within(i):
            store.put(key, value)


def save_index(saves: Saves, stores: Stores, within: Within = _nowhere) -> None:
    """Step 1 of a batch's save: its message index entries. Call once all its events are in the log.

    They must be durable before step 2 (:func:`save_state`): a redelivered command that its
    aggregate record answers is not decided again, so nothing would write its entries again."""
    _write(saves.index, stores.messages, within)


def save_state(saves: Saves, stores: Stores, within: Within = _nowhere) -> None:
    """Step 2 of a batch's save, once its index entries are durable: the aggregate records, then the
    long-term outcomes (``remembered`` ignores an outcome that is ahead of its aggregate's state).

    ``within(i)`` is entered around a write that the batch's i-th command made last (a Faust table
    writes to the changelog partition of the event that is current while it is written; every key
    of a command is in the command's own partition)."""
    _write(saves.records, stores.aggregates, within)
    _write(saves.outcomes, stores.outcomes, within)


def save_batch(decided: Sequence[Decided[Any]], stores: Stores, within: Within = _nowhere) -> None:
    """Both steps at once, for stores whose writes are durable when made (tests, one process)."""
    saves = batch_saves(decided)
    save_index(saves, stores, within)
    save_state(saves, stores, within)
