"""Media through the real command handler: the conversation's single writer decides them."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commands.handler import Result
from domain.conversation import conversation_stream_id
from tests.unit.app.scenario import USERS, Scenario

A, B, C = USERS[0], USERS[1], USERS[2]
KEY = "k" * 32


def request(s: Scenario, conv: str, actor: str, media_id: str = "m1", **over: Any) -> Result:
    payload: dict[str, Any] = {
        "media_id": media_id,
        "object_key": KEY + media_id,
        "filename": "cat.png",
        "content_type": "image/png",
        "size": 100,
        "expires_in_s": 60,
        **over,
    }
    return s.on(conv, "media:request-upload", actor, **payload)


def complete(s: Scenario, conv: str, actor: str, media_id: str = "m1", size: int | None = 100) -> Result:
    ctype = "image/png" if size is not None else None
    return s.on(
        conv, "media:upload-complete", actor, media_id=media_id, observed_size=size, observed_content_type=ctype
    )


def code(result: Result) -> str | None:
    return None if result.outcome.ok else result.outcome.error_code


def test_request_complete_attach_and_delete() -> None:
    s = Scenario()
    conv = s.create_group(A, [B])
    asked = request(s, conv, A)
    assert asked.outcome.ok and asked.outcome.data["media_id"] == "m1"
    assert asked.outcome.data["object_key"] == KEY + "m1"
    assert [e.type for e in asked.events] == ["MediaUploadRequested"]
    assert code(s.on(conv, "message:send", A, body="see", media_ids=["m1"])) == "invalid", "not uploaded yet"
    done = complete(s, conv, A)
    assert done.outcome.data == {
        "media_id": "m1",
        "status": "ready",
        "size": 100,
        "content_type": "image/png",
        "version": done.outcome.data["version"],
    }
    again = complete(s, conv, A)
    assert again.outcome.ok and again.events == [], "completing twice appends nothing"
    sent = s.on(conv, "message:send", A, body="see", media_ids=["m1", "m1"])
    assert sent.outcome.ok
    assert sent.events[0].payload["attachments"] == [
        {"media_id": "m1", "filename": "cat.png", "content_type": "image/png", "size": 100}
    ]
    assert code(s.on(conv, "message:send", B, body="mine?", media_ids=["m1"])) == "forbidden"
    assert code(s.on(conv, "media:delete", B, media_id="m1")) == "forbidden", "owner only"
    gone = s.on(conv, "media:delete", A, media_id="m1")
    assert gone.outcome.ok and [e.type for e in gone.events] == ["MediaDeleted"]
    assert code(s.on(conv, "media:delete", A, media_id="m1")) == "not_found"
    assert code(s.on(conv, "message:send", A, body="again", media_ids=["m1"])) == "not_found"


def test_outsiders_and_bad_uploads_are_refused() -> None:
    s = Scenario()
    conv = s.create_group(A, [B])
    assert code(request(s, conv, C)) == "not_found", "a stranger learns nothing"
    assert request(s, conv, A).outcome.ok
    assert code(request(s, conv, A)) == "conflict", "a media id is used once"
    assert code(complete(s, conv, B)) == "forbidden", "only the uploader completes"
    assert code(complete(s, conv, A, size=None)) == "invalid", "nothing uploaded"
    assert code(complete(s, conv, A, size=99)) == "invalid", "size differs"
    assert (
        code(
            s.on(conv, "media:upload-complete", A, media_id="m1", observed_size=100, observed_content_type="image/gif")
        )
        == "invalid"
    )
    other = s.create_group(B, [C])
    assert code(complete(s, other, B, media_id="m1")) == "not_found", "media of another conversation"
    assert s.on(conv, "conversation:remove-participant", A, user_id=B).outcome.ok
    assert code(request(s, conv, B, media_id="m2")) == "not_found", "a removed participant"


def test_an_expired_upload_cannot_be_completed() -> None:
    s = Scenario()
    conv = s.create_group(A, [B])
    assert request(s, conv, A, expires_in_s=1).outcome.ok
    s.clock = s.clock.replace(year=s.clock.year + 1)
    assert code(complete(s, conv, A)) == "not_found"


@pytest.mark.parametrize(
    ("field", "value"),
    [("size", 0), ("filename", "../etc/passwd"), ("filename", ""), ("content_type", "png"), ("object_key", "short")],
)
def test_invalid_requests(field: str, value: Any) -> None:
    s = Scenario()
    conv = s.create_group(A, [B])
    assert code(request(s, conv, A, **{field: value})) == "invalid"


@given(st.lists(st.sampled_from(["request", "complete", "delete", "send"]), max_size=12))
def test_a_redelivered_command_gives_identical_events(steps: list[str]) -> None:
    """Deciding each command twice (a redelivery) never appends anything the first did not."""
    s = Scenario()
    conv = s.create_group(A, [B])
    for n, step in enumerate(steps):
        mid = f"m{n % 3}"
        payloads: dict[str, dict[str, Any]] = {
            "request": {
                "media_id": mid,
                "object_key": KEY + mid,
                "filename": "f.bin",
                "content_type": "application/octet-stream",
                "size": 5,
                "expires_in_s": 60,
            },
            "complete": {"media_id": mid, "observed_size": 5, "observed_content_type": "application/octet-stream"},
            "delete": {"media_id": mid},
            "send": {"body": "x", "media_ids": [mid]},
        }
        payload = payloads[step]
        ctype = {
            "request": "media:request-upload",
            "complete": "media:upload-complete",
            "delete": "media:delete",
            "send": "message:send",
        }[step]
        command = s.command(ctype, conversation_stream_id(conv), A, {"conversation_id": conv, **payload})
        first = s.run(command)
        second = s.run(command)
        assert second.events == [] and second.outcome.ok == first.outcome.ok
        assert second.outcome.data == first.outcome.data
