"""The search projection: the documents it indexes, and versioned index operations that give the
same index whatever the order and repetition they arrive in."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from domain.envelope import EventEnvelope
from projections.base import Doc, first_touches, fold
from projections.search import IndexName, IndexOp, SearchProjection, final_index, index_ops
from tests.unit.app.scenario import USERS, Scenario
from tests.unit.projections.test_read_models import OPS, build_log

A, B, C, D = USERS
PROJECTION = SearchProjection()
Index = dict[tuple[IndexName, str], tuple[int, dict[str, Any]]]


def in_order_once(log: list[EventEnvelope]) -> Index:
    """Every event once, in log order, as one fold: the reference index."""
    return final_index(index_ops(fold(PROJECTION, {}, log)))


def live(deliveries: list[EventEnvelope], batch: int) -> tuple[Index, list[IndexOp]]:
    """As the live store does it: per batch, read the touched documents from the index, fold, write
    the operations with external versioning. Returns the index and every operation written."""
    index: Index = {}
    written: list[IndexOp] = []
    for start in range(0, len(deliveries), batch):
        chunk = deliveries[start : start + batch]
        current: dict[str, Doc | None] = {}
        for key in first_touches(PROJECTION, chunk):
            name, _, doc_id = key.partition("/")
            held = index.get((name, doc_id))  # type: ignore[arg-type]
            current[key] = _as_doc(key, held) if held else None
        ops = index_ops(fold(PROJECTION, current, chunk))
        written.extend(ops)
        held_ops = [IndexOp(n, d, v, s) for (n, d), (v, s) in index.items()]
        index = final_index([*held_ops, *ops])
    return index, written


def _as_doc(key: str, held: tuple[int, dict[str, Any]]) -> Doc:
    from projections.search import from_source, split_key

    name, doc_id = split_key(key)
    return from_source(name, doc_id, held[1])


@given(OPS, st.data())
def test_redelivered_batches_give_the_index_of_the_log_applied_once(
    ops: list[tuple[str, str, int]], data: st.DataObject
) -> None:
    log = build_log(ops)
    deliveries: list[EventEnvelope] = []
    for i, event in enumerate(log):
        deliveries.append(event)
        if data.draw(st.booleans(), label=f"redeliver@{i}"):  # at-least-once: an earlier stretch again
            back = data.draw(st.integers(min_value=0, max_value=min(i, 6)), label="back")
            deliveries.extend(log[i - back : i + 1])
    batch = data.draw(st.integers(min_value=1, max_value=13), label="batch")
    index, _ = live(deliveries, batch)
    assert index == in_order_once(log)


@given(OPS, st.data())
def test_index_operations_shuffled_and_duplicated_give_the_same_index(
    ops: list[tuple[str, str, int]], data: st.DataObject
) -> None:
    """External versioning: the index operations of a log, written in any order and any number of
    times (two writers, retried bulks), leave the index as writing them once in order does."""
    log = build_log(ops)
    written = index_ops(fold(PROJECTION, {}, log))
    per_event: list[IndexOp] = []
    docs: dict[str, Doc | None] = {}
    for event in log:  # the operation of every single event, as a one-event batch writes it
        folded = fold(PROJECTION, {k: docs.get(k) for k in PROJECTION.doc_ids(event)}, [event])
        docs.update(folded.docs)
        per_event.extend(index_ops(folded))
    again = data.draw(st.lists(st.sampled_from(per_event)), label="again") if per_event else []
    shuffled = data.draw(st.permutations(per_event + again), label="order")
    assert final_index(shuffled) == final_index(written)


def test_documents_of_each_index() -> None:
    s = Scenario()
    s.register(A, "Alice")
    group = s.create_group(A, [B, C], "project falcon")
    sent = s.on(group, "message:send", B, body="the falcon has landed")
    mid = sent.outcome.data["message_id"]
    index = in_order_once(s.log)
    version, user = index[("users", A)]
    assert user["username"] == "Alice" and user["username_normalised"] == "alice" and version == 1
    _, conversation = index[("conversations", group)]
    assert conversation["title"] == "project falcon" and conversation["participant_ids"] == [A, B, C]
    assert conversation["kind"] == "group"
    version, message = index[("messages", mid)]
    assert message["body"] == "the falcon has landed" and message["sender_id"] == B and not message["deleted"]
    assert message["conversation_id"] == group and message["seq"] == 1 and version == message["stream_version"]
    assert "password_hash" not in user

    s.on(group, "message:edit", B, message_id=mid, body="the eagle has landed")
    s.on(group, "conversation:rename", A, title="project eagle")
    s.on(group, "conversation:remove-participant", A, user_id=C)
    index = in_order_once(s.log)
    assert index[("messages", mid)][1]["body"] == "the eagle has landed"
    assert index[("conversations", group)][1]["title"] == "project eagle"
    assert index[("conversations", group)][1]["participant_ids"] == [A, B]

    s.on(group, "message:delete", B, message_id=mid)
    version, message = in_order_once(s.log)[("messages", mid)]
    assert message["deleted"] is True and message["body"] is None and version == len(s.log) - 1


def test_a_delete_is_not_undone_by_a_redelivered_send_or_edit() -> None:
    s = Scenario()
    group = s.create_group(A, [B], "t")
    sent = s.on(group, "message:send", A, body="secret plans")
    mid = sent.outcome.data["message_id"]
    edited = s.on(group, "message:edit", A, message_id=mid, body="secret plans v2")
    s.on(group, "message:delete", A, message_id=mid)
    # After the delete, the send and the edit arrive again, alone and together (a fresh batch reads nothing).
    index, _ = live([*s.log, sent.events[0], edited.events[0], sent.events[0]], batch=1)
    assert index[("messages", mid)][1]["deleted"] is True
    fresh = index_ops(fold(PROJECTION, {}, [sent.events[0], edited.events[0]]))
    held = [IndexOp(n, d, v, src) for (n, d), (v, src) in index.items()]
    assert final_index([*held, *fresh])[("messages", mid)][1]["deleted"] is True


def test_events_the_indexes_do_not_hold_change_nothing() -> None:
    s = Scenario()
    group = s.create_group(A, [B], "t")
    sent = s.on(group, "message:send", A, body="hi")
    before = in_order_once(s.log)
    s.on(group, "message:react", B, message_id=sent.outcome.data["message_id"], emoji="👍", on=True)
    s.on(group, "message:read", B, seq=1)
    assert in_order_once(s.log) == before


def test_an_end_to_end_encrypted_message_is_indexed_without_text() -> None:
    s = Scenario()
    group = s.create_group(A, [B], "t")
    sealed = "c2VhbGVkIGJ5IHRoZSBjbGllbnQ="  # base64: the server never reads it
    sent = s.on(group, "message:send", A, ciphertext=sealed)
    assert sent.outcome.ok, sent.outcome
    mid = sent.outcome.data["message_id"]
    s.on(group, "message:edit", A, message_id=mid, ciphertext=sealed + "AA==")
    _, message = in_order_once(s.log)[("messages", mid)]
    # Found by no query: no body, and the ciphertext is not in the document at all.
    assert message["body"] is None and not message["deleted"]
    assert sealed not in repr(message)
