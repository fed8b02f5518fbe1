"""The pure compliance trail: deterministic records, hash chains, and tamper detection."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from domain.envelope import EventEnvelope, Rejection
from projections.audit import (
    GENESIS,
    AuditRecord,
    ChainHead,
    audit_record,
    canonical_json,
    check_against_log,
    extend_chain,
    log_digest,
    record_hash,
    subject_of,
    verify_chain,
)
from tests.unit.ops.events import chat_log

TOPIC = "parley.events"


def items_of(seed: int, messages: int = 25) -> list[tuple[int, EventEnvelope | Rejection]]:
    log = chat_log(seed=seed, messages=messages)
    return list(enumerate([*log.events, *log.rejections]))


def chain_of(items: list[tuple[int, EventEnvelope | Rejection]]) -> list[AuditRecord]:
    return extend_chain(items, topic=TOPIC, partition=0, head=ChainHead())


def relinked(records: list[AuditRecord], start: int) -> list[AuditRecord]:
    """The chain with every record from ``start`` re-linked and re-hashed (a careful forger)."""
    out = list(records[:start])
    prev = out[-1].hash if out else GENESIS
    for record in records[start:]:
        fields = {**record.hashed_fields(), "prev_hash": prev, "seq": len(out) + 1}
        new = AuditRecord(**fields, hash=record_hash(fields))
        out.append(new)
        prev = new.hash
    return out


def test_a_record_says_who_did_what_to_what_and_when() -> None:
    log = chat_log(seed=1, messages=6)
    sent = next(e for e in log.events if e.type == "MessageSent")
    record = audit_record(sent, topic=TOPIC, partition=2, offset=17, head=ChainHead(4, "ab" * 32))
    assert (record._id, record.chain, record.seq, record.log_offset) == (sent.event_id, f"{TOPIC}:2", 5, 17)
    assert (record.kind, record.action, record.outcome) == ("event", "MessageSent", "applied")
    assert record.actor_id == sent.actor_id and record.correlation_id == sent.correlation_id
    assert record.subject == sent.payload["conversation_id"]
    assert record.occurred_at == sent.occurred_at.replace(microsecond=sent.occurred_at.microsecond // 1000 * 1000)
    assert record.prev_hash == "ab" * 32 and record.digest == log_digest(sent)
    assert record.hash == record_hash(record.hashed_fields())

    refused = log.rejections[0]
    r = audit_record(refused, topic="parley.rejections", partition=0, offset=0, head=ChainHead())
    assert (r.kind, r.action, r.outcome, r.seq, r.prev_hash) == (
        "rejection",
        "message:send",
        "refused:forbidden",
        1,
        GENESIS,
    )
    assert r.subject == subject_of(refused.aggregate_id) and r.subject is not None
    assert not r.subject.startswith("conversation:")


def test_the_trail_is_a_function_of_the_log() -> None:
    first = chain_of(items_of(2))
    again = chain_of(items_of(2))
    assert first == again
    assert [r.seq for r in first] == list(range(1, len(first) + 1))
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(first))
    assert verify_chain(f"{TOPIC}:0", first) is None


@given(st.integers(min_value=0, max_value=10_000), st.lists(st.integers(min_value=1, max_value=9), max_size=8))
def test_appending_in_batches_equals_one_pass_even_with_redelivery(seed: int, cuts: list[int]) -> None:
    items = items_of(seed, messages=12)
    whole = chain_of(items)
    built: list[AuditRecord] = []
    known: set[str] = set()
    head = ChainHead()
    position = 0
    for size in [*cuts, len(items)]:
        # Each batch starts a little before where the last one ended: redelivery.
        start = max(0, position - 2)
        batch = items[start : start + size + 2]
        new = extend_chain(batch, topic=TOPIC, partition=0, head=head, known_ids=known)
        built.extend(new)
        head = built[-1].head if built else head
        position = start + len(batch)
        if position >= len(items):
            break
    assert built == whole


def test_repeated_copies_in_the_log_are_recorded_once() -> None:
    items = items_of(3)
    copies = [*items[:10], *[(100 + o, item) for o, item in items[4:7]], *[(200 + o, i) for o, i in items[10:]]]
    records = chain_of(copies)
    assert [r._id for r in records] == [r._id for r in chain_of(items)]


def test_a_changed_field_breaks_the_hash() -> None:
    records = chain_of(items_of(4))
    records[5] = dataclasses.replace(records[5], actor_id="mallory")
    found = verify_chain(f"{TOPIC}:0", records)
    assert found is not None
    assert (found.seq, found.record_id, found.problem) == (6, records[5]._id, "hash mismatch")


def test_a_removed_record_is_a_gap() -> None:
    records = chain_of(items_of(5))
    del records[7]
    found = verify_chain(f"{TOPIC}:0", records)
    assert found is not None and (found.seq, found.problem) == (9, "missing record")
    assert "seq 8 not in the trail" in found.describe()


def test_an_inserted_record_breaks_the_link_or_repeats_a_seq() -> None:
    items = [(10 * offset, item) for offset, item in items_of(6)]  # room between log offsets
    records = chain_of(items)
    forged_fields = {**records[3].hashed_fields(), "_id": "forged", "actor_id": "mallory", "log_offset": 35}
    forged = AuditRecord(**forged_fields, hash=record_hash(forged_fields))
    found = verify_chain(f"{TOPIC}:0", [*records[:4], forged, *records[4:]])
    assert found is not None and (found.record_id, found.problem) == ("forged", "inserted record")
    # Renumbered and re-linked after the insertion, the chain holds together...
    rewritten = relinked([*records[:4], forged, *records[4:]], 4)
    assert verify_chain(f"{TOPIC}:0", rewritten) is None
    # ...but the forged record describes nothing on the log at its offset, or something else.
    broken = check_against_log(rewritten[4], dict(items).get(35))
    assert broken is not None and broken.problem == "inserted record"
    broken = check_against_log(rewritten[4], dict(items)[30])
    assert broken is not None and broken.problem == "inserted record" and "the log has" in broken.detail
    # Placed over an existing offset, it is out of order.
    clash = AuditRecord(**{**forged_fields, "log_offset": 30}, hash="")
    found = verify_chain(f"{TOPIC}:0", relinked([*records[:4], clash, *records[4:]], 4))
    assert found is not None and found.problem == "inserted record" and "is not after" in found.detail


def test_a_rewritten_and_rehashed_record_differs_from_the_log() -> None:
    items = items_of(7)
    records = chain_of(items)
    fields = {**records[2].hashed_fields(), "outcome": "refused:forbidden"}
    records[2] = AuditRecord(**fields, hash=record_hash(fields))
    rewritten = relinked(records, 2)
    assert verify_chain(f"{TOPIC}:0", rewritten) is None
    log = dict(items)
    assert check_against_log(rewritten[1], log[rewritten[1].log_offset]) is None
    broken = check_against_log(rewritten[2], log[rewritten[2].log_offset])
    assert broken is not None and broken.problem == "differs from log"
    digest_forged = dataclasses.replace(rewritten[3], digest="00" * 32)
    broken = check_against_log(digest_forged, log[digest_forged.log_offset])
    assert broken is not None and broken.problem == "digest differs from log"
    assert check_against_log(rewritten[3], None) is not None


def test_a_stored_record_hashes_the_same_after_a_round_trip() -> None:
    """MongoDB keeps milliseconds: records hash over millisecond times so a stored record verifies."""
    log = chat_log(seed=8, messages=2)
    event = log.events[-1].model_copy(update={"occurred_at": datetime(2025, 1, 2, 3, 4, 5, 678_901, tzinfo=UTC)})
    record = audit_record(event, topic=TOPIC, partition=0, offset=0, head=ChainHead())
    stored = record.to_doc()
    stored["occurred_at"] = datetime(2025, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)  # what comes back
    assert AuditRecord.from_doc(stored) == record
    assert AuditRecord.from_doc(stored).computed_hash() == record.hash


def test_canonical_json_ignores_key_order() -> None:
    assert canonical_json({"b": 1, "a": [1, {"y": 2, "x": "é"}]}) == canonical_json(
        {"a": [1, {"x": "é", "y": 2}], "b": 1}
    )
    assert canonical_json({"at": datetime(2025, 1, 1, tzinfo=UTC)}) == b'{"at":"2025-01-01T00:00:00.000Z"}'
