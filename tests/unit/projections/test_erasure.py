"""Erasure == rebuild: every view folded from a log whose erased users' personal fields read
"[erased]" equals the view folded from the plaintext log with ``redact`` applied to the documents
``holding`` finds (projections/base.py, docs/THREAT-MODEL.md).

The runtime relies on it twice: an erasure redacts what ``holding`` finds in every live view (so
``holding`` must find every document ``redact`` would change), and a rebuild after the erasure opens
the sealed log with the erased key gone. Both must give the same views."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.envelope import EventEnvelope
from domain.personal import ERASED, erased_username, subject_of, take
from infra.security.shredding import open_event, seal
from projections.base import Doc, DocumentProjection, fold
from projections.catalog import DOCUMENT_PROJECTIONS
from projections.search import SEARCH, SearchProjection, doc_key, split_key
from tests.unit.app.scenario import USERS
from tests.unit.domain.test_keys import key
from tests.unit.domain.test_personal import PERSONAL_OPS, personal_log, username_of
from tests.unit.projections.test_read_models import OPS, build_log

A, B, C, D = USERS
PROJECTIONS: dict[str, DocumentProjection] = {**DOCUMENT_PROJECTIONS, SEARCH: SearchProjection()}
KEYS: dict[str, bytes | None] = {uid: secrets.token_bytes(32) for uid in USERS}
ERASED_SETS = st.lists(st.sampled_from(USERS), unique=True, max_size=len(USERS))
LOGS = st.one_of(OPS.map(build_log), PERSONAL_OPS.map(personal_log))
Docs = dict[str, Doc | None]
_MISSING = object()


def erased_log(log: list[EventEnvelope], erased: Iterable[str]) -> list[EventEnvelope]:
    """The log as a reader sees it once the keys of ``erased`` are destroyed: sealed as the worker
    appends it, opened with those keys gone."""
    keys = {**KEYS, **dict.fromkeys(erased)}
    return [open_event(seal(event, KEYS), keys) for event in log]


def lookup(doc: Doc, path: str) -> Any:
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def matches(doc: Doc, query: Mapping[str, Any]) -> bool:
    """MongoDB's equality filter (``{"a.b": v}``; an array field matches when it holds ``v``)."""
    for path, wanted in query.items():
        found = lookup(doc, path)
        if found != wanted and not (isinstance(found, list) and wanted in found):
            return False
    return True


def holds(projection: DocumentProjection, doc: Doc, user_id: str) -> bool:
    """Whether the runtime's erasure of ``user_id`` reaches ``doc``. The search store queries each
    index for the field of ``holding`` that names its documents' user (infra/search_store.py)."""
    query = projection.holding(user_id)
    if query is None:
        return False
    if isinstance(projection, SearchProjection):
        index, _ = split_key(str(doc["_id"]))
        field = {"messages": "sender_id", "users": "user_id"}.get(index)
        return field is not None and field in query and doc.get(field) == query[field]
    return matches(doc, query)


def redacted(projection: DocumentProjection, docs: Docs, erased: Iterable[str]) -> Docs:
    """What an erasure of ``erased`` makes of the documents it reaches."""
    out: Docs = {}
    for doc_id, doc in docs.items():
        for user_id in erased:
            if doc is not None and holds(projection, doc, user_id):
                doc = projection.redact(doc, user_id)
        out[doc_id] = doc
    return out


def present(docs: Docs) -> dict[str, Doc]:
    return {k: v for k, v in docs.items() if v is not None}


def folded(projection: DocumentProjection, events: list[EventEnvelope], docs: Docs | None = None) -> Docs:
    return fold(projection, docs or {}, events).docs


def assert_erasure_is_a_rebuild(log: list[EventEnvelope], erased: list[str]) -> None:
    rebuilt_from = erased_log(log, erased)
    for name, projection in PROJECTIONS.items():
        plain = folded(projection, log)
        assert present(folded(projection, rebuilt_from)) == present(redacted(projection, plain, erased)), name


@given(OPS, ERASED_SETS)
def test_erasure_equals_redacting_the_views_of_the_plaintext_log(
    ops: list[tuple[str, str, int]], erased: list[str]
) -> None:
    assert_erasure_is_a_rebuild(build_log(ops), erased)


@given(PERSONAL_OPS, ERASED_SETS)
def test_erasure_equals_redacting_the_views_with_media_and_attachments(
    ops: list[tuple[str, str, int]], erased: list[str]
) -> None:
    assert_erasure_is_a_rebuild(personal_log(ops), erased)


@given(LOGS, st.sampled_from(USERS), st.data())
def test_an_erasure_while_the_views_are_live(log: list[EventEnvelope], user_id: str, data: st.DataObject) -> None:
    """As the runtime goes: views folded from plaintext up to the erasure, then redacted; a batch
    that opened the user's events with a key destroyed meanwhile (``k..j``) is redacted again; then
    the rest of the log, whose boxes no longer open. The views end as a rebuild would make them."""
    k = data.draw(st.integers(0, len(log)), label="erased after")
    j = data.draw(st.integers(k, len(log)), label="key still cached until")
    after = erased_log(log[j:], [user_id])
    for name, projection in PROJECTIONS.items():
        docs = redacted(projection, folded(projection, log[:k]), [user_id])
        docs = redacted(projection, folded(projection, log[k:j], docs), [user_id])
        docs = folded(projection, after, docs)
        assert present(docs) == present(folded(projection, erased_log(log, [user_id]))), name


@given(LOGS, st.sampled_from(USERS), st.sampled_from(USERS))
def test_redact_is_idempotent_commutes_and_leaves_other_documents_alone(
    log: list[EventEnvelope], user_id: str, other: str
) -> None:
    for name, projection in PROJECTIONS.items():
        for doc in present(folded(projection, log)).values():
            once = projection.redact(doc, user_id)
            assert projection.redact(once, user_id) == once, name
            assert projection.redact(projection.redact(doc, other), user_id) == projection.redact(
                projection.redact(doc, user_id), other
            ), name
            if not holds(projection, doc, user_id):
                assert once == doc, f"{name}: redact changed a document the erasure does not reach"
            assert {k: once[k] for k in ("_id", "_stream", "_sv")} == {k: doc[k] for k in ("_id", "_stream", "_sv")}


@pytest.mark.parametrize("name", sorted(PROJECTIONS))
def test_holding_filters_are_simple_equalities_on_the_user(name: str) -> None:
    query = PROJECTIONS[name].holding(A)
    if name == "keys":
        assert query is None, "public keys are no personal data"
        return
    assert query
    for path, value in query.items():
        assert not path.startswith("$") and value == A


# -- one erasure, looked at closely ----------------------------------------------------------------

SCRIPT = [
    ("send", A, 1),
    ("send", B, 2),
    ("send_e2e", A, 4),
    ("request", A, 1),
    ("complete", A, 1),
    ("attach", A, 1),
    ("request", B, 2),
    ("complete", B, 2),
    ("attach", B, 2),
    ("edit", A, 0),
    ("send", A, 0),  # the last message of the direct conversation
]


def views(log: list[EventEnvelope]) -> dict[str, dict[str, Doc]]:
    return {name: present(folded(projection, log)) for name, projection in PROJECTIONS.items()}


def personal_values(log: list[EventEnvelope], user_id: str) -> set[str]:
    return {
        str(value)
        for event in log
        if subject_of(event.type, event.payload) == user_id
        for value in take(event.type, event.payload)[1].values()
    }


def test_no_view_holds_anything_of_an_erased_user_and_the_others_keep_theirs() -> None:
    log = personal_log(SCRIPT)
    seen = views(erased_log(log, [A]))
    text = json.dumps(seen, ensure_ascii=False)
    mine, theirs = personal_values(log, A), personal_values(log, B)
    assert len(mine) >= 8 and not mine & theirs
    for value in mine:
        assert value not in text, value
    for value in (username_of(B).capitalize(), "Member number 1", f"note 2 by {B}", f"attached 2 of {B}.pdf"):
        assert value in text, value

    user = seen["users"][A]
    assert (user["username"], user["display_name"], user["password_hash"]) == (ERASED, ERASED, ERASED)
    assert user["username_normalised"] == erased_username(A)
    assert seen["users"][B]["username_normalised"] == username_of(B)
    by_sender = {uid: [m for m in seen["messages"].values() if m["sender_id"] == uid] for uid in (A, B)}
    assert len(by_sender[A]) == 4
    assert {m["body"] for m in by_sender[A]} == {ERASED, None}, "an end-to-end message has no body to erase"
    assert {m["ciphertext"] for m in by_sender[A]} == {ERASED, None}
    assert [a["filename"] for m in by_sender[A] for a in m["attachments"]] == [ERASED]
    assert [a["filename"] for m in by_sender[B] for a in m["attachments"]] == [f"attached 2 of {B}.pdf"]
    media = {uid: {d["filename"] for d in seen["media"].values() if d["uploader_id"] == uid} for uid in (A, B)}
    assert media == {A: {ERASED}, B: {f"scan 2 of {B}.pdf", f"attached 2 of {B}.pdf"}}
    (direct,) = [c for c in seen["conversations"].values() if c["kind"] == "direct"]
    assert direct["last_message"]["sender_id"] == A and direct["last_message"]["body"] == ERASED
    search = seen[SEARCH]
    assert search[doc_key("users", A)]["username"] is None and search[doc_key("users", B)]["username"] == "Member1"
    found = {uid: [d["body"] for d in search.values() if d.get("sender_id") == uid] for uid in (A, B)}
    assert len(found[A]) == 4 and set(found[A]) == {None}, "an erased sender's messages are found by no search"
    assert f"note 2 by {B}" in found[B]


def test_two_erased_users_keep_distinct_names_in_the_users_view() -> None:
    """The users view has a unique index on the normalised name: erased users must not collide."""
    users = views(erased_log(personal_log([]), [A, B]))["users"]
    names = [doc["username_normalised"] for doc in users.values()]
    assert len(set(names)) == len(USERS)
    assert {users[A]["username_normalised"], users[B]["username_normalised"]} == {
        erased_username(A),
        erased_username(B),
    }


def test_an_end_to_end_message_of_an_erased_user_has_no_ciphertext_left() -> None:
    log = personal_log([("send_e2e", A, 1)])
    (message,) = views(erased_log(log, [A]))["messages"].values()
    assert (message["body"], message["ciphertext"], message["format"]) == (None, ERASED, "e2e")
    assert key(1) not in json.dumps(views(erased_log(log, [A])))
