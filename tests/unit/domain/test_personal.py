"""The personal-data policy (domain/personal.py): which fields of which events are a user's, taking
them out and putting them back, and which user's key the events of a command are sealed under.

Also ``personal_log``: realistic logs full of personal data (names, bodies, ciphertexts, media
filenames, attachments) from the real command handler, for the sealing and erasure tests."""

from __future__ import annotations

import copy
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commands.handler import Result
from domain import catalog as ev
from domain.envelope import CommandEnvelope, EventEnvelope
from domain.errors import DomainError
from domain.names import normalise_username, username_stream_id
from domain.personal import (
    ERASED,
    POLICY,
    SEALED_FIELD,
    erased,
    erased_username,
    put,
    sealing_subject,
    subject_of,
    take,
)
from tests.unit.app.scenario import INDEX_KEY, USERS, Scenario
from tests.unit.domain.test_keys import key

A, B, C, D = USERS

# -- realistic logs ------------------------------------------------------------------------------

KINDS = [
    *("send", "send", "send_e2e", "attach", "edit", "edit_e2e", "delete", "react"),
    *("request", "request", "complete", "complete", "delete_media", "leave"),
]
PERSONAL_OPS = st.lists(
    st.tuples(st.sampled_from(KINDS), st.sampled_from(USERS), st.integers(min_value=0, max_value=30)), max_size=30
)
OBJECT_KEY = "object-key-" + "k" * 16
MEDIA_SIZE = 10


def username_of(uid: str) -> str:
    return f"member{USERS.index(uid)}"


def register(s: Scenario, uid: str) -> Result:
    name = username_of(uid)
    payload = {
        "user_id": uid,
        "username": f" {name.capitalize()} ",
        "display_name": f"Member number {USERS.index(uid)}",
        "password_hash": f"$argon2id$v=19$fake-hash-of-{uid}",
    }
    return s.run(s.command("user:register", username_stream_id(name, INDEX_KEY), None, payload))


def request(s: Scenario, conv: str, actor: str, media_id: str, filename: str) -> Result:
    return s.on(
        conv,
        "media:request-upload",
        actor,
        media_id=media_id,
        object_key=OBJECT_KEY + media_id,
        filename=filename,
        content_type="application/pdf",
        size=MEDIA_SIZE,
        expires_in_s=3600,
    )


def upload(s: Scenario, conv: str, actor: str, media_id: str, filename: str) -> bool:
    """Request an upload and complete it; whether the media is ready."""
    return request(s, conv, actor, media_id, filename).outcome.ok and complete(s, conv, actor, media_id).outcome.ok


def complete(s: Scenario, conv: str, actor: str, media_id: str) -> Result:
    return s.on(
        conv,
        "media:upload-complete",
        actor,
        media_id=media_id,
        observed_size=MEDIA_SIZE,
        observed_content_type="application/pdf",
    )


def personal_log(ops: list[tuple[str, str, int]], s: Scenario | None = None) -> list[EventEnvelope]:
    """Registrations, messages (plain and end-to-end), edits, uploads and attachments by every user
    (some refused: D is in no conversation at first, only the sender edits, ...)."""
    s = s if s is not None else Scenario()
    for uid in USERS:
        assert register(s, uid).outcome.ok
    group = s.create_group(A, [B, C], "team")
    direct = s.create_direct(A, B)
    sent: list[tuple[str, str]] = []
    for op, actor, n in ops:
        conv = group if n % 3 else direct
        media_id = f"m{n % 5}"  # shared by every user: some uploads conflict, some attachments are refused
        if op in ("send", "send_e2e", "attach"):
            content: dict[str, Any] = {"ciphertext": key(n)} if op == "send_e2e" else {"body": f"note {n} by {actor}"}
            if op == "attach":
                own = f"a{len(s.log)}"  # a fresh upload, so that most attachments are accepted
                upload(s, conv, actor, own, f"attached {n} of {actor}.pdf")
                content["media_ids"] = [own, media_id] if n % 4 == 0 else [own]
            r = s.on(conv, "message:send", actor, **content)
            if r.outcome.ok:
                sent.append((conv, r.outcome.data["message_id"]))
        elif op in ("edit", "edit_e2e", "delete", "react"):
            if not sent:
                continue
            where, mid = sent[n % len(sent)]
            if op == "edit":
                s.on(where, "message:edit", actor, message_id=mid, body=f"edited {n} by {actor}")
            elif op == "edit_e2e":
                s.on(where, "message:edit", actor, message_id=mid, ciphertext=key(n + 100))
            elif op == "delete":
                s.on(where, "message:delete", actor, message_id=mid)
            else:
                s.on(where, "message:react", actor, message_id=mid, emoji="👍", on=bool(n % 2))
        elif op == "request":  # half of them completed at once
            if n % 2:
                upload(s, conv, actor, media_id, f"scan {n} of {actor}.pdf")
            else:
                request(s, conv, actor, media_id, f"scan {n} of {actor}.pdf")
        elif op == "complete":
            complete(s, conv, actor, media_id)
        elif op == "delete_media":
            s.on(conv, "media:delete", actor, media_id=media_id)
        elif op == "leave":
            s.on(group, "conversation:leave", actor)
    return s.log


@dataclass
class Recording(Scenario):
    """A scenario that remembers each command with the events it appended."""

    decided: list[tuple[CommandEnvelope, list[EventEnvelope]]] = field(default_factory=list)

    def run(self, command: CommandEnvelope) -> Result:
        result = super().run(command)
        self.decided.append((command, list(result.events)))
        return result


def test_the_personal_log_holds_every_kind_of_personal_field() -> None:
    ops = [("request", A, 2), ("complete", A, 2), ("attach", A, 1), ("send_e2e", B, 2), ("edit", A, 0)]
    log = personal_log(ops)
    types_ = [e.type for e in log]
    assert types_.count("UserRegistered") == 4
    for event_type in POLICY:
        assert event_type in types_
    (attached,) = [e for e in log if e.type == "MessageSent" and e.payload.get("attachments")]
    assert attached.payload["attachments"][0]["filename"] == f"attached 1 of {A}.pdf"
    assert any(e.type == "MessageSent" and e.payload.get("ciphertext") == key(2) for e in log)


# -- the policy and the catalogue ------------------------------------------------------------------


def _holds_str(annotation: Any) -> bool:
    """``str`` or ``str | None``."""
    if annotation is str:
        return True
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return str in typing.get_args(annotation) and set(typing.get_args(annotation)) <= {str, type(None)}
    return False


@pytest.mark.parametrize("event_type", sorted(POLICY))
def test_every_policy_names_fields_of_its_event(event_type: str) -> None:
    """A path that names no field would leave personal data in clear without anyone noticing."""
    model = ev.payload_model(event_type)
    policy = POLICY[event_type]
    subject = model.model_fields[policy.subject]
    assert subject.annotation is str, "the subject is a user id"
    assert policy.subject not in {p.split(".")[0] for p in policy.paths}, "the subject stays readable"
    for path in policy.paths:
        head, _, rest = path.partition(".*.")
        assert head in model.model_fields, path
        if rest:
            assert head == "attachments" and rest in ev.Attachment.model_fields, path
            assert _holds_str(ev.Attachment.model_fields[rest].annotation)
        else:
            assert _holds_str(model.model_fields[head].annotation), path


def test_events_without_personal_data_have_no_policy() -> None:
    assert set(POLICY) == {"UserRegistered", "MessageSent", "MessageEdited", "MediaUploadRequested"}
    assert "UserErased" not in POLICY and SEALED_FIELD not in ev.MessageSent.model_fields
    assert subject_of("UserErased", {"user_id": A, "erased_by": "user", "erased_at": "x"}) is None
    assert subject_of("ReactionChanged", {"user_id": A}) is None


def test_subject_of() -> None:
    assert subject_of("UserRegistered", {"user_id": A, "username": "x"}) == A
    assert subject_of("MessageSent", {"sender_id": B, "body": "hi"}) == B
    assert subject_of("MessageEdited", {"sender_id": C, "body": "hi"}) == C
    assert subject_of("MediaUploadRequested", {"uploader_id": D}) == D
    assert subject_of("MessageSent", {"body": "hi"}) is None, "no subject field"
    assert subject_of("MessageSent", {"sender_id": 7, "body": "hi"}) is None, "not a user id"


def _command(type_: str, actor: str | None, payload: dict[str, Any]) -> CommandEnvelope:
    s = Scenario()
    return s.command(type_, "conversation:c", actor, payload)


@pytest.mark.parametrize("type_", ["message:send", "message:edit", "media:request-upload"])
def test_the_sealing_subject_of_a_content_command_is_its_actor(type_: str) -> None:
    assert sealing_subject(_command(type_, B, {"user_id": A})) == B
    assert sealing_subject(_command(type_, None, {})) is None


def test_the_sealing_subject_of_a_registration_is_the_new_user() -> None:
    assert sealing_subject(_command("user:register", None, {"user_id": A, "username": "alice"})) == A
    assert sealing_subject(_command("user:register", None, {"user_id": 7})) is None
    assert sealing_subject(_command("user:register", None, {})) is None


@pytest.mark.parametrize(
    "type_",
    ["message:delete", "message:react", "message:read", "conversation:create", "media:upload-complete", "user:erase"],
)
def test_commands_without_personal_data_have_no_sealing_subject(type_: str) -> None:
    assert sealing_subject(_command(type_, A, {"user_id": A})) is None


@given(PERSONAL_OPS)
def test_every_personal_event_is_sealed_under_its_commands_sealing_subject(ops: list[tuple[str, str, int]]) -> None:
    """The worker loads the keys of ``sealing_subject(command)`` before deciding: the subject of
    every event with personal data must be that user, or sealing it would find no key."""
    s = Recording()
    personal_log(ops, s)
    assert s.decided
    for command, events in s.decided:
        for event in events:
            _, taken = take(event.type, event.payload)
            subject = subject_of(event.type, event.payload)
            if event.type in POLICY:
                assert taken, f"{event.type} always carries personal data"
                assert subject is not None and subject == sealing_subject(command), (command.type, event.type)
            else:
                assert not taken and subject is None


# -- take, put, erased ------------------------------------------------------------------------------

TEXT = st.text(max_size=8)
MAYBE_TEXT = st.none() | TEXT
ATTACHMENT = st.fixed_dictionaries(
    {"media_id": TEXT}, optional={"filename": MAYBE_TEXT, "size": st.integers(0, 9), "content_type": TEXT}
)


def _top_level(event_type: str) -> tuple[list[str], bool]:
    """The policy's plain field names, and whether it names attachment filenames."""
    paths = POLICY[event_type].paths
    return [p for p in paths if ".*." not in p], "attachments.*.filename" in paths


@st.composite
def policy_payloads(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    event_type = draw(st.sampled_from(sorted(POLICY)))
    names, with_attachments = _top_level(event_type)
    payload: dict[str, Any] = {POLICY[event_type].subject: draw(TEXT), "seq": draw(st.integers(0, 9))}
    for name in names:
        if draw(st.booleans()):
            payload[name] = draw(MAYBE_TEXT)
    if with_attachments and draw(st.booleans()):
        payload["attachments"] = draw(st.none() | st.lists(ATTACHMENT, max_size=3))
    return event_type, payload


def _expected_paths(event_type: str, payload: dict[str, Any]) -> set[str]:
    names, with_attachments = _top_level(event_type)
    found = {name for name in names if payload.get(name) is not None}
    if with_attachments:
        for i, item in enumerate(payload.get("attachments") or []):
            if item.get("filename") is not None:
                found.add(f"attachments.{i}.filename")
    return found


@given(policy_payloads())
def test_take_then_put_gives_the_payload_back(case: tuple[str, dict[str, Any]]) -> None:
    event_type, payload = case
    before = copy.deepcopy(payload)
    rest, taken = take(event_type, payload)
    assert payload == before, "take never changes the caller's payload"
    assert set(taken) == _expected_paths(event_type, payload)
    assert all(value is not None for value in taken.values()), "an absent (None) field holds nothing"
    assert take(event_type, rest) == (rest, {}), "nothing personal is left"
    assert rest[POLICY[event_type].subject] == payload[POLICY[event_type].subject]
    kept = copy.deepcopy(rest)
    assert put(rest, taken) == payload
    assert rest == kept, "put never changes its input either"


@given(policy_payloads())
def test_erased_fields_read_erased_in_place(case: tuple[str, dict[str, Any]]) -> None:
    event_type, payload = case
    rest, taken = take(event_type, payload)
    out = put(rest, erased(sorted(taken)))
    assert take(event_type, out)[1] == dict.fromkeys(taken, ERASED)
    # Everything else is as it was: absent fields stay absent (None), other fields untouched.
    expected = put(payload, dict.fromkeys(taken, ERASED))
    assert out == expected


def test_take_of_a_message_with_attachments() -> None:
    payload: dict[str, Any] = {
        "sender_id": A,
        "body": "hello",
        "ciphertext": None,
        "attachments": [
            {"media_id": "m1", "filename": "a.png", "size": 1},
            {"media_id": "m2", "filename": "b.png", "size": 2},
        ],
    }
    rest, taken = take("MessageSent", payload)
    assert taken == {"body": "hello", "attachments.0.filename": "a.png", "attachments.1.filename": "b.png"}
    assert rest == {
        "sender_id": A,
        "ciphertext": None,
        "attachments": [{"media_id": "m1", "size": 1}, {"media_id": "m2", "size": 2}],
    }
    assert payload["attachments"][0]["filename"] == "a.png", "the caller's nested dicts are untouched"


def test_an_event_type_without_a_policy_gives_nothing() -> None:
    payload = {"conversation_id": "c", "title": "team"}
    rest, taken = take("ConversationRenamed", payload)
    assert (rest, taken) == (payload, {})
    assert rest is not payload


def test_erased() -> None:
    assert erased(["body", "attachments.0.filename"]) == {"body": ERASED, "attachments.0.filename": ERASED}
    assert erased([]) == {}
    assert ERASED == "[erased]"


@given(st.sampled_from(USERS), st.sampled_from(USERS))
def test_an_erased_username_is_unique_and_no_valid_name(first: str, second: str) -> None:
    name = erased_username(first)
    assert name.startswith(ERASED) and first in name
    assert (name == erased_username(second)) == (first == second), "the users view's unique index holds"
    with pytest.raises(DomainError):
        normalise_username(name)
