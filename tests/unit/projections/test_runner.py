"""The projection runner's classification: what it parks, and what it applies around it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from domain.envelope import EventEnvelope
from infra.kafka.codec import decode_event, encode_event
from projections.base import Doc, Folded, IndexSpec, OnEvent, fold
from projections.runner import Projector, Record
from tests.unit.ops.events import LogBuilder


class Parked:
    def __init__(self) -> None:
        self.reasons: dict[int, str] = {}

    async def park(self, source_topic: str, partition: int, offset: int, value: bytes, reason: str) -> None:
        self.reasons[offset] = reason


class Counts:
    """Messages per conversation; raises on a body saying "boom", as a projection with a bug would."""

    name = "counts"
    indexes: tuple[IndexSpec, ...] = ()
    creating_events: frozenset[str] = frozenset()

    def doc_ids(self, event: EventEnvelope) -> list[str]:
        return [event.stream_id] if event.type == "MessageSent" else []

    def apply(self, doc: Doc | None, doc_id: str, event: EventEnvelope) -> Doc | None:
        if event.payload.get("body") == "boom":
            raise KeyError("boom")
        return {"count": (doc or {}).get("count", 0) + 1}

    def holding(self, user_id: str) -> dict[str, Any] | None:
        return None  # counts hold nobody's personal data

    def redact(self, doc: Doc, user_id: str) -> Doc:
        return doc


class MemoryStore:
    def __init__(self) -> None:
        self.docs: dict[str, Doc | None] = {}
        self.writes = 0

    async def apply(self, events: Sequence[EventEnvelope], on_event: OnEvent | None = None) -> Folded:
        folded = fold(Counts(), self.docs, events, on_event)  # raises before writing anything
        self.docs = folded.docs
        self.writes += 1
        return folded


async def test_undecodable_unupcastable_and_failing_events_are_parked_and_the_rest_applied() -> None:
    log = LogBuilder(seed=5)
    a, b = log.user("a"), log.user("b")
    conversation = log.conversation(a, [b])
    for body in ("one", "boom", "two", "future", "three"):
        log.message(conversation, a, body)
    values = [encode_event(e)[1] for e in log.events]
    future = next(i for i, e in enumerate(log.events) if e.payload.get("body") == "future")
    values[future] = encode_event(log.events[future].model_copy(update={"schema_version": 99}))[1]
    values.insert(2, b"not json")
    records = [Record(0, offset, value) for offset, value in enumerate(values)]
    dead = Parked()
    runner = Projector("events", decode_event, dead, backoff_s=0.0)
    store = MemoryStore()

    decoded = await runner.decode_batch(records)
    applied = await runner.project("counts", store, decoded.current)

    assert {offset: reason.split(":")[0] for offset, reason in dead.reasons.items()} == {
        2: "undecodable",
        future + 1: "upcast",
        next(r.offset for r, e in decoded.current if e.payload.get("body") == "boom"): "counts",
    }
    assert len(decoded.stored) == len(records) - 1  # the trail still gets the event it cannot upcast
    assert applied == 3 and store.docs == {
        f"conversation:{conversation}": {
            "count": 3,
            "_id": f"conversation:{conversation}",
            "_stream": f"conversation:{conversation}",
            "_sv": log.events[-1].stream_version,
            "_cid": log.events[-1].correlation_id,
        }
    }
