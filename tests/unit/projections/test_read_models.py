"""Pure read-model projections: shapes, idempotency, rebuild == incremental under redelivery."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from domain.envelope import EventEnvelope
from domain.keys import keys_stream_id
from domain.upcasting import upcast
from projections.base import VERSION_FIELD, Doc, first_touches, fold, to_look_up
from projections.catalog import DOCUMENT_PROJECTIONS
from projections.pushes import keys_pushes, pushes_for
from tests.unit.app.scenario import USERS, Scenario
from tests.unit.domain.test_keys import key, prekeys, publish_payload

A, B, C, D = USERS

Views = dict[str, dict[str, Doc | None]]


def clean_fold(events: list[EventEnvelope]) -> Views:
    views: Views = {}
    for name, projection in DOCUMENT_PROJECTIONS.items():
        views[name] = {k: v for k, v in fold(projection, {}, events).docs.items() if v is not None}
    return views


def incremental(deliveries: list[EventEnvelope], batch: int) -> Views:
    views: Views = {name: {} for name in DOCUMENT_PROJECTIONS}
    for start in range(0, len(deliveries), batch):
        chunk = deliveries[start : start + batch]
        for name, projection in DOCUMENT_PROJECTIONS.items():
            current = views[name]
            touched = {i: current.get(i) for i in first_touches(projection, chunk)}
            folded = fold(projection, touched, chunk)
            for doc_id in folded.changed:
                doc = folded.docs[doc_id]
                if doc is None:
                    current.pop(doc_id, None)
                else:
                    current[doc_id] = doc
    return views


def incremental_as_stored(deliveries: list[EventEnvelope], batch: int) -> Views:
    """As the live stores apply a batch: only the documents ``to_look_up`` names are read, and a
    document is written only over an older version (removed unconditionally)."""
    views: Views = {name: {} for name in DOCUMENT_PROJECTIONS}
    for start in range(0, len(deliveries), batch):
        chunk = deliveries[start : start + batch]
        for name, projection in DOCUMENT_PROJECTIONS.items():
            current = views[name]
            first = first_touches(projection, chunk)
            read = set(to_look_up(projection, first))
            folded = fold(projection, {i: current.get(i) if i in read else None for i in first}, chunk)
            for doc_id in folded.changed:
                doc, stored = folded.docs[doc_id], current.get(doc_id)
                if doc is None:
                    current.pop(doc_id, None)
                elif stored is None or int(stored[VERSION_FIELD]) < int(doc[VERSION_FIELD]):
                    current[doc_id] = doc
    return views


OPS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                *("send", "send", "send", "send_e2e", "edit", "delete", "react", "read"),
                *("add", "remove", "leave", "rename", "publish_keys", "replenish", "bundle"),
            ]
        ),
        st.sampled_from(USERS),
        st.integers(min_value=0, max_value=30),
    ),
    max_size=40,
)


def keys_command(s: Scenario, ctype: str, actor: str, owner: str, payload: dict[str, Any]) -> None:
    s.run(s.command(ctype, keys_stream_id(owner), actor, payload))


def build_log(ops: list[tuple[str, str, int]]) -> list[EventEnvelope]:
    s = Scenario()
    for i, uid in enumerate(USERS):
        s.register(uid, f"user{i}")
    group = s.create_group(A, [B, C], "team")
    direct = s.create_direct(A, B)
    sent: list[str] = []
    for op, actor, n in ops:
        conv = group if n % 3 else direct
        if op == "send":
            r = s.on(conv, "message:send", actor, body=f"hello {n}")
            if r.outcome.ok:
                sent.append(r.outcome.data["message_id"])
        elif op == "send_e2e":
            r = s.on(conv, "message:send", actor, ciphertext=key(n))
            if r.outcome.ok:
                sent.append(r.outcome.data["message_id"])
        elif op == "publish_keys":  # device n % 2, identity n % 3, fresh ids from 100 * n (some refused)
            payload = publish_payload(device=f"d{n % 2}", identity=n % 3, first=100 * n, count=n % 4)
            keys_command(s, "keys:publish", actor, actor, payload)
        elif op == "replenish":
            payload = {"device_id": f"d{n % 2}", "one_time_prekeys": prekeys(100 * n + 50, 1 + n % 3)}
            keys_command(s, "keys:replenish", actor, actor, payload)
        elif op == "bundle":
            keys_command(s, "keys:bundle", actor, USERS[n % 4], {"user_id": USERS[n % 4]})
        elif op in ("edit", "delete", "react") and sent:
            mid = sent[n % len(sent)]
            for c in (group, direct):
                if op == "edit":
                    s.on(c, "message:edit", actor, message_id=mid, body=f"edited {n}")
                    s.on(c, "message:edit", actor, message_id=mid, ciphertext=key(n + 1))
                elif op == "delete":
                    s.on(c, "message:delete", actor, message_id=mid)
                else:
                    s.on(c, "message:react", actor, message_id=mid, emoji="👍", on=bool(n % 2))
        elif op == "read":
            s.on(conv, "message:read", actor, seq=n)
        elif op == "add":
            s.on(group, "conversation:add-participants", actor, user_ids=[USERS[n % 4]])
        elif op == "remove":
            s.on(group, "conversation:remove-participant", actor, user_id=USERS[n % 4])
        elif op == "leave":
            s.on(conv, "conversation:leave", actor)
        elif op == "rename":
            s.on(group, "conversation:rename", actor, title=f"title {n}")
    return s.log


@given(OPS, st.data())
def test_rebuild_equals_incremental_with_redeliveries(ops: list[tuple[str, str, int]], data: st.DataObject) -> None:
    log = build_log(ops)
    deliveries: list[EventEnvelope] = []
    for i, event in enumerate(log):
        deliveries.append(event)
        # At-least-once: sometimes a earlier stretch of the log arrives again.
        if data.draw(st.booleans(), label=f"redeliver@{i}"):
            back = data.draw(st.integers(min_value=0, max_value=min(i, 5)), label="back")
            deliveries.extend(log[i - back : i + 1])
    batch = data.draw(st.integers(min_value=1, max_value=17), label="batch")
    assert incremental(deliveries, batch) == clean_fold(log)
    assert incremental_as_stored(deliveries, batch) == clean_fold(log), "no lookup for a creating event"


@given(OPS)
def test_replaying_the_log_as_stored_gives_the_same_views(ops: list[tuple[str, str, int]]) -> None:
    """Replay determinism: the log read back from its wire form folds into the same views, also twice over."""
    log = build_log(ops)
    from_the_wire = [EventEnvelope.model_validate_json(event.model_dump_json()) for event in log]
    assert clean_fold(from_the_wire) == clean_fold(log)
    assert incremental(from_the_wire + from_the_wire, 50) == clean_fold(log)


def test_read_model_shapes() -> None:
    s = Scenario()
    s.register(A, "alice")
    conv = s.create_direct(A, B)
    sent = s.on(conv, "message:send", A, body="hi")
    mid = sent.outcome.data["message_id"]
    s.on(conv, "message:react", B, message_id=mid, emoji="🎉", on=True)
    s.on(conv, "message:read", B, seq=1)
    views = clean_fold(s.log)
    conversation = views["conversations"][conv]
    assert conversation is not None
    assert conversation["participant_ids"] == [A, B]
    assert conversation["last_message"]["body"] == "hi"
    assert conversation["read_markers"] == {B: 1}
    assert conversation["version"] == 4
    message = views["messages"][mid]
    assert message is not None
    assert message["reactions"] == {"🎉": [B]} and message["seq"] == 1 and not message["deleted"]
    user = views["users"][A]
    assert user is not None and user["username_normalised"] == "alice"
    s.on(conv, "message:delete", A, message_id=mid)
    deleted = clean_fold(s.log)["messages"][mid]
    assert deleted is not None and deleted["deleted"] and deleted["body"] is None and deleted["seq"] == 1


def test_pushes_reach_current_participants_only() -> None:
    s = Scenario()
    group = s.create_group(A, [B, C], "team")
    s.on(group, "conversation:remove-participant", A, user_id=C)
    r = s.on(group, "message:send", B, body="after removal")
    views = clean_fold(s.log)
    (push,) = pushes_for(r.events[0], views["conversations"][group])
    assert push.event == "message:new" and set(push.user_ids) == {A, B}
    receipt = s.on(group, "message:read", B, seq=1)
    (rp,) = pushes_for(receipt.events[0], clean_fold(s.log)["conversations"][group])
    assert rp.event == "receipt:read" and rp.user_ids == (A,)


def test_old_v1_log_replays_into_todays_read_models() -> None:
    fixture = Path(__file__).parents[1] / "domain" / "fixtures" / "v1_log.jsonl"
    raw: list[dict[str, Any]] = [json.loads(line) for line in fixture.read_text().splitlines() if line.strip()]
    events = [upcast(EventEnvelope.model_validate(r)) for r in raw]
    assert any(r["type"] == "MessageSent" and r["schema_version"] == 1 for r in raw)
    views = clean_fold(events)
    messages = [m for m in views["messages"].values() if m is not None]
    assert messages, "the v1 log's messages reach today's message view"
    for m in messages:
        assert m["format"] == "plain"
        assert (m["body"] is None) if m["deleted"] else isinstance(m["body"], str)
    assert any(not m["deleted"] for m in messages)


def test_keys_view_and_e2e_messages() -> None:
    s = Scenario()
    conv = s.create_direct(A, B)
    keys_command(s, "keys:publish", A, A, publish_payload(count=3))
    keys_command(s, "keys:bundle", B, A, {"user_id": A})
    keys_command(s, "keys:replenish", A, A, {"device_id": "phone", "one_time_prekeys": prekeys(4, 2)})
    sent = s.on(conv, "message:send", A, ciphertext=key(42))
    views = clean_fold(s.log)
    view = views["keys"][A]
    assert view is not None and view["version"] == 3
    phone = view["devices"]["phone"]
    assert (phone["identity_key"], phone["one_time_prekeys_available"]) == (key(1), 4)
    message = views["messages"][sent.outcome.data["message_id"]]
    assert message is not None
    assert (message["body"], message["ciphertext"], message["format"]) == (None, key(42), "e2e")
    conversation = views["conversations"][conv]
    assert conversation is not None and conversation["last_message"]["ciphertext"] == key(42)
    (push,) = pushes_for(sent.events[0], conversation)
    assert (push.data["body"], push.data["ciphertext"]) == (None, key(42))


def test_keys_changed_goes_to_partners_and_the_user_on_a_new_device_or_identity() -> None:
    s = Scenario()
    first = s.run(s.command("keys:publish", keys_stream_id(A), A, publish_payload(count=1)))
    (push,) = keys_pushes(first.events[0], {A, B, C})
    assert push.event == "keys:changed" and push.user_ids == (A, B, C)
    assert (push.data["user_id"], push.data["device_id"], push.data["new_device"]) == (A, "phone", True)
    same = s.run(s.command("keys:publish", keys_stream_id(A), A, publish_payload(first=5, count=1)))
    assert keys_pushes(same.events[0], {A, B}) == []  # same identity: a new signed prekey only
    changed = s.run(s.command("keys:publish", keys_stream_id(A), A, publish_payload(identity=9, first=9)))
    (again,) = keys_pushes(changed.events[0], set())  # in no conversation: the user's own sockets
    assert again.user_ids == (A,) and again.data["identity_changed"] is True
