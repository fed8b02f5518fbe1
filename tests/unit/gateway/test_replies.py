"""Outcomes on a gateway's reply channel: one per message, or a batch's in one message."""

from __future__ import annotations

import pytest

from domain.envelope import Outcome
from infra.replies import decode_replies, encode_replies


def outcome(n: int, ok: bool = True) -> Outcome:
    return Outcome(
        command_id=f"c{n}",
        correlation_id=f"r{n}",
        ok=ok,
        data={"n": n} if ok else {},
        error_code=None if ok else "conflict",
        error_message=None if ok else "version 3 expected",
        reply_to="gw-1",
    )


def test_a_batch_travels_in_one_message_and_keeps_its_order() -> None:
    batch = [outcome(1), outcome(2, ok=False), outcome(3)]
    message = encode_replies(batch)
    assert message.startswith("[")
    assert decode_replies(message) == batch
    assert decode_replies(message.encode()) == batch


def test_a_lone_outcome_is_a_plain_object_as_before() -> None:
    message = encode_replies([outcome(7)])
    assert message == outcome(7).model_dump_json()
    assert decode_replies(message) == [outcome(7)]


@pytest.mark.parametrize("bad", ["", "{", "[1, 2]", '{"command_id": 3}', "null", b"\xff"])
def test_anything_else_is_a_value_error(bad: str | bytes) -> None:
    with pytest.raises(ValueError):
        decode_replies(bad)
