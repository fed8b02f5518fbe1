"""The compliance trail, pure: one hash-chained record per event and per refused command.

There is one chain per partition of the events topic and per partition of the rejections
topic (``chain = "<topic>:<partition>"``), so each chain has a single writer: the consumer
of that partition. Records carry only what the log says (times come from the envelope,
never the clock), so building the trail twice from the same log gives identical chains.

- ``digest``: sha256 of the canonical JSON of the log record (the envelope as on the log),
  which ties the record to the log entry at ``log_offset``;
- ``hash``: sha256 of the canonical JSON of every other field, ``prev_hash`` included.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from domain.conversation import STREAM_PREFIX as CONVERSATION_PREFIX
from domain.conversation import conversation_in
from domain.envelope import EventEnvelope, Rejection, iso

GENESIS = "0" * 64

Kind = Literal["event", "rejection"]

# The fields of a record, in the order they are stored; ``hash`` covers all the others.
FIELDS = (
    "_id",
    "chain",
    "seq",
    "log_offset",
    "kind",
    "actor_id",
    "action",
    "subject",
    "outcome",
    "correlation_id",
    "occurred_at",
    "digest",
    "prev_hash",
)


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8, datetimes as ISO-8601 UTC with milliseconds."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default).encode()


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    raise TypeError(f"not canonical JSON: {type(value).__name__}")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def log_digest(item: EventEnvelope | Rejection) -> str:
    """The digest of a log record: what ``digest`` must equal for the record at its offset."""
    return sha256_hex(canonical_json(item.model_dump(mode="json")))


def chain_name(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


def split_chain(chain: str) -> tuple[str, int]:
    topic, _, partition = chain.rpartition(":")
    return topic, int(partition)


def item_id(item: EventEnvelope | Rejection) -> str:
    return item.event_id if isinstance(item, EventEnvelope) else item.rejection_id


def subject_of(stream_or_aggregate_id: str | None, payload: Mapping[str, Any] | None = None) -> str | None:
    """What the record is about: the conversation id for a conversation, else the stream id."""
    if stream_or_aggregate_id is None:
        return None
    if stream_or_aggregate_id.startswith(CONVERSATION_PREFIX):
        if payload is not None and isinstance(payload.get("conversation_id"), str):
            return str(payload["conversation_id"])
        return conversation_in(stream_or_aggregate_id) or stream_or_aggregate_id
    return stream_or_aggregate_id


def to_millis(dt: datetime) -> datetime:
    """The instant as MongoDB keeps it (UTC, milliseconds), so a stored record hashes the same."""
    dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)


@dataclass(frozen=True)
class ChainHead:
    seq: int = 0
    hash: str = GENESIS


@dataclass(frozen=True)
class AuditRecord:
    _id: str
    chain: str
    seq: int
    log_offset: int
    kind: Kind
    actor_id: str | None
    action: str
    subject: str | None
    outcome: str
    correlation_id: str
    occurred_at: datetime
    digest: str
    prev_hash: str
    hash: str

    @property
    def head(self) -> ChainHead:
        return ChainHead(self.seq, self.hash)

    def to_doc(self) -> dict[str, Any]:
        doc = {name: getattr(self, name) for name in FIELDS}
        doc["hash"] = self.hash
        return doc

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> AuditRecord:
        """A stored record as is (a missing field is kept as None: verification names it)."""
        occurred = doc.get("occurred_at")
        return cls(
            _id=str(doc.get("_id")),
            chain=str(doc.get("chain")),
            seq=_int(doc.get("seq")),
            log_offset=_int(doc.get("log_offset")),
            kind=doc.get("kind"),  # type: ignore[arg-type]  # verified by hashing, not trusted
            actor_id=doc.get("actor_id"),
            action=str(doc.get("action")),
            subject=doc.get("subject"),
            outcome=str(doc.get("outcome")),
            correlation_id=str(doc.get("correlation_id")),
            occurred_at=to_millis(occurred) if isinstance(occurred, datetime) else occurred,  # type: ignore[arg-type]
            digest=str(doc.get("digest")),
            prev_hash=str(doc.get("prev_hash")),
            hash=str(doc.get("hash")),
        )

    def hashed_fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in FIELDS}

    def computed_hash(self) -> str:
        try:
            return record_hash(self.hashed_fields())
        except TypeError:  # a stored field of a type no genuine record has
            return ""


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def record_hash(fields: Mapping[str, Any]) -> str:
    return sha256_hex(canonical_json({k: v for k, v in fields.items() if k != "hash"}))


def audit_record(
    item: EventEnvelope | Rejection, *, topic: str, partition: int, offset: int, head: ChainHead
) -> AuditRecord:
    """The next record of the chain ``topic:partition`` for the log entry at ``offset``."""
    if isinstance(item, EventEnvelope):
        kind: Kind = "event"
        action = item.type
        subject = subject_of(item.stream_id, item.payload)
        outcome = "applied"
    else:
        kind = "rejection"
        action = item.command_type
        subject = subject_of(item.aggregate_id)
        outcome = f"refused:{item.code}"
    fields: dict[str, Any] = {
        "_id": item_id(item),
        "chain": chain_name(topic, partition),
        "seq": head.seq + 1,
        "log_offset": offset,
        "kind": kind,
        "actor_id": item.actor_id,
        "action": action,
        "subject": subject,
        "outcome": outcome,
        "correlation_id": item.correlation_id,
        "occurred_at": to_millis(item.occurred_at),
        "digest": log_digest(item),
        "prev_hash": head.hash,
    }
    return AuditRecord(**fields, hash=record_hash(fields))


def extend_chain(
    items: Iterable[tuple[int, EventEnvelope | Rejection]],
    *,
    topic: str,
    partition: int,
    head: ChainHead,
    known_ids: set[str] | None = None,
) -> list[AuditRecord]:
    """Records for (offset, item) pairs of one partition in offset order, skipping ids already
    recorded (``known_ids``, updated in place) and repeated copies within ``items``."""
    known = known_ids if known_ids is not None else set()
    out: list[AuditRecord] = []
    for offset, item in items:
        ident = item_id(item)
        if ident in known:
            continue
        record = audit_record(item, topic=topic, partition=partition, offset=offset, head=head)
        known.add(ident)
        out.append(record)
        head = record.head
    return out


@dataclass(frozen=True)
class ChainBreak:
    """The first place where a chain is not whole."""

    chain: str
    seq: int
    record_id: str | None
    problem: str  # "hash mismatch", "missing record", "inserted record", "broken link", ...
    detail: str = ""

    def describe(self) -> str:
        who = f" record {self.record_id}" if self.record_id else ""
        more = f": {self.detail}" if self.detail else ""
        return f"chain {self.chain} seq {self.seq}{who}: {self.problem}{more}"


class ChainChecker:
    """Checks one chain's records fed in seq order: seq continuity, prev_hash links, hashes."""

    def __init__(self, chain: str) -> None:
        self.chain = chain
        self.head = ChainHead()
        self.last_offset = -1
        self.count = 0

    def check(self, record: AuditRecord) -> ChainBreak | None:
        expected = self.head.seq + 1
        if record.chain != self.chain:
            return self._break(record, "inserted record", f"belongs to chain {record.chain!r}")
        if record.seq > expected:
            missing = f"seq {expected}" if record.seq == expected + 1 else f"seq {expected}..{record.seq - 1}"
            return self._break(record, "missing record", f"{missing} not in the trail")
        if record.seq < expected:
            return self._break(record, "inserted record", f"seq {record.seq} repeats an earlier seq")
        if record.prev_hash != self.head.hash:
            return self._break(record, "broken link", "prev_hash does not match the previous record's hash")
        if record.hash != record.computed_hash():
            return self._break(record, "hash mismatch", "the record's fields do not match its hash")
        if record.log_offset <= self.last_offset:
            return self._break(
                record, "inserted record", f"log offset {record.log_offset} is not after {self.last_offset}"
            )
        self.head = record.head
        self.last_offset = record.log_offset
        self.count += 1
        return None

    def _break(self, record: AuditRecord, problem: str, detail: str) -> ChainBreak:
        return ChainBreak(self.chain, record.seq, record._id, problem, detail)


def verify_chain(chain: str, records: Iterable[AuditRecord]) -> ChainBreak | None:
    """The first break in a chain (records in seq order), or None when it is whole."""
    checker = ChainChecker(chain)
    for record in records:
        found = checker.check(record)
        if found is not None:
            return found
    return None


def check_against_log(record: AuditRecord, item: EventEnvelope | Rejection | None) -> ChainBreak | None:
    """Does the record describe the log entry at its offset (``None``: no entry there)?"""
    if item is None:
        return ChainBreak(
            record.chain,
            record.seq,
            record._id,
            "inserted record",
            f"no log record at offset {record.log_offset}",
        )
    if item_id(item) != record._id:
        return ChainBreak(
            record.chain,
            record.seq,
            record._id,
            "inserted record",
            f"the log has {item_id(item)} at offset {record.log_offset}",
        )
    if log_digest(item) != record.digest:
        return ChainBreak(
            record.chain, record.seq, record._id, "digest differs from log", f"offset {record.log_offset}"
        )
    expected = audit_record(
        item,
        topic=split_chain(record.chain)[0],
        partition=split_chain(record.chain)[1],
        offset=record.log_offset,
        head=ChainHead(record.seq - 1, record.prev_hash),
    )
    if expected.hash != record.hash:
        return ChainBreak(
            record.chain,
            record.seq,
            record._id,
            "differs from log",
            "the record's fields do not describe the log record",
        )
    return None
