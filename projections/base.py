"""Pure document projections: ``apply(view, event) -> view``.

A document projection says which documents an event touches and how each changes. The
framework (``fold``) adds idempotency: every document belongs to one stream and records the
stream version last applied to it (``_sv``), so an event delivered twice, or an older event
delivered after a newer one, changes nothing. The same fold serves the live agent (a few
events at a time) and a rebuild (the whole log), which is what makes rebuild == incremental.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from domain.envelope import EventEnvelope

Doc = dict[str, Any]

VERSION_FIELD = "_sv"
STREAM_FIELD = "_stream"
CORRELATION_FIELD = "_cid"  # the correlation id of the last event applied: traces a view back to a request


@dataclass(frozen=True)
class IndexSpec:
    """A MongoDB index, described without importing the driver."""

    keys: tuple[tuple[str, int], ...]
    unique: bool = False
    name: str | None = None


class DocumentProjection(Protocol):
    """One read model: documents keyed by id, each owned by one event stream."""

    name: str
    indexes: tuple[IndexSpec, ...]
    creating_events: frozenset[str]  # event types whose document cannot exist before them

    def doc_ids(self, event: EventEnvelope) -> list[str]:
        """The ids of the documents this event changes (empty: the projection ignores it)."""
        ...

    def apply(self, doc: Doc | None, doc_id: str, event: EventEnvelope) -> Doc | None:
        """The document after the event (``None``: the document does not exist / is removed)."""
        ...

    def holding(self, user_id: str) -> dict[str, Any] | None:
        """A filter on documents (MongoDB's query language) matching every document that may hold
        personal data of ``user_id``; None if this view holds none (docs/THREAT-MODEL.md)."""
        ...

    def redact(self, doc: Doc, user_id: str) -> Doc:
        """``doc`` as if ``user_id``'s data key had been destroyed before any event was applied to it.

        Erasure == rebuild: a view folded from events whose personal fields read "[erased]" equals the
        view folded from the plaintext events and then redacted (tests/unit/projections)."""
        ...


@dataclass
class Folded:
    """Documents after a fold, plus which ids changed and which events were new."""

    docs: dict[str, Doc | None]
    changed: set[str] = field(default_factory=set)
    applied: list[EventEnvelope] = field(default_factory=list)


def is_applied(doc: Doc | None, event: EventEnvelope) -> bool:
    return (
        doc is not None
        and doc.get(STREAM_FIELD) == event.stream_id
        and int(doc.get(VERSION_FIELD, 0)) >= event.stream_version
    )


OnEvent = Callable[[EventEnvelope, Mapping[str, "Doc | None"]], None]


def fold(
    projection: DocumentProjection,
    docs: Mapping[str, Doc | None],
    events: Iterable[EventEnvelope],
    on_event: OnEvent | None = None,
) -> Folded:
    """Apply events in order to the given documents (which must include every id they touch).

    ``on_event`` sees the documents right after each newly applied event (pushes use it to
    address the participants of that moment, not of the end of the batch).
    """
    out = Folded(docs=dict(docs))
    for event in events:
        touched = False
        for doc_id in projection.doc_ids(event):
            current = out.docs.get(doc_id)
            if is_applied(current, event):
                continue
            new = projection.apply(current, doc_id, event)
            if new is not None:
                new = {
                    **new,
                    "_id": doc_id,
                    STREAM_FIELD: event.stream_id,
                    VERSION_FIELD: event.stream_version,
                    CORRELATION_FIELD: event.correlation_id,
                }
            if new != current:
                out.docs[doc_id] = new
                out.changed.add(doc_id)
            touched = True
        if touched:
            out.applied.append(event)
            if on_event is not None:
                on_event(event, out.docs)
    return out


def first_touches(projection: DocumentProjection, events: Iterable[EventEnvelope]) -> dict[str, str]:
    """Every document id the events touch, in order, with the type of the first event that touches it."""
    first: dict[str, str] = {}
    for event in events:
        for doc_id in projection.doc_ids(event):
            first.setdefault(doc_id, event.type)
    return first


def to_look_up(projection: DocumentProjection, first: Mapping[str, str], on_event: OnEvent | None = None) -> list[str]:
    """The documents whose stored version a fold of a batch needs (``first`` is ``first_touches``).

    A document first touched by the event that creates it needs none: it cannot exist before that
    event, so if it exists the event is a repeat, and a store that writes only over an older version
    (MongoDB's filter, the search indexes' external versions) keeps the stored document. The log is
    read in order, so the repeat comes with every later event of its stream: the fold from nothing
    reaches the same document. A fold with ``on_event`` (the pushes) needs every one: it must tell
    only the events new to their documents, and would take a repeat for new."""
    if on_event is not None:
        return list(first)
    return [doc_id for doc_id, kind in first.items() if kind not in projection.creating_events]
