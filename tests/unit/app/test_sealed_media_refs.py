"""The worker's media index keeps filenames sealed under the uploader's key (its changelog topic is
never rewritten), while deciding through it works exactly as through a plain table."""

from __future__ import annotations

import json
import os

from commands.handler import Stores
from domain.media import media_ref_key
from infra.security.shredding import SealedMediaRefs
from tests.unit.app.scenario import USERS, DictKV, Scenario
from tests.unit.app.test_media import complete, request

A, B = USERS[0], USERS[1]


def sealed_scenario(keys: dict[str, bytes | None]) -> tuple[Scenario, DictKV]:
    table = DictKV()
    return Scenario(stores=Stores(DictKV(), SealedMediaRefs(table, keys), DictKV())), table


def test_a_message_attaches_a_filename_the_table_never_holds_in_clear() -> None:
    keys: dict[str, bytes | None] = {A: os.urandom(32), B: os.urandom(32)}
    s, table = sealed_scenario(keys)
    conv = s.create_group(A, [B])
    assert request(s, conv, A, filename="holiday-in-lisbon.png").outcome.ok
    assert complete(s, conv, A).outcome.ok
    sent = s.on(conv, "message:send", A, body="look", media_ids=["m1"])
    assert sent.outcome.ok
    assert sent.events[0].payload["attachments"][0]["filename"] == "holiday-in-lisbon.png"
    stored = table.data[media_ref_key("m1")]
    assert "lisbon" not in json.dumps(table.data) and "filename" not in stored
    assert stored["uploader_id"] == A and stored["status"] == "ready", "what deciding needs stays readable"


def test_the_same_ref_seals_to_the_same_bytes_and_an_erased_uploader_reads_erased() -> None:
    key = os.urandom(32)
    ref = {
        "conversation_id": "c",
        "media_id": "m1",
        "uploader_id": A,
        "filename": "cat.png",
        "content_type": "image/png",
        "size": 1,
        "status": "pending",
        "expires_at": "2026-01-01T00:00:00.000Z",
    }
    first, second = DictKV(), DictKV()
    SealedMediaRefs(first, {A: key}).put(media_ref_key("m1"), ref)
    SealedMediaRefs(second, {A: key}).put(media_ref_key("m1"), ref)
    assert first.data == second.data, "a redelivered batch saves identical records"
    assert SealedMediaRefs(first, {A: key}).get(media_ref_key("m1")) == ref
    assert SealedMediaRefs(first, {A: None}).get(media_ref_key("m1")) == {**ref, "filename": "[erased]"}
    # Message refs (bare ids) pass through untouched.
    plain = {"conversation_id": "c", "message_id": "x", "sender_id": A, "seq": 1}
    SealedMediaRefs(first, {}).put("x", plain)
    assert first.data["x"] == plain
