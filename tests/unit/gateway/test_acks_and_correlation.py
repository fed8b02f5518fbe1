"""Ack shapes, payload validation messages and correlation ids."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field

from api.http.correlation import correlation_id_or_new, is_valid_correlation_id
from api.socket.acks import AckError, error_ack, ok_ack, parse_payload


def test_ok_ack() -> None:
    assert ok_ack({"version": 3}, "c-1") == {"ok": True, "data": {"version": 3}, "correlation_id": "c-1"}


def test_error_ack() -> None:
    assert error_ack("not_found", "conversation not found", "c-2") == {
        "ok": False,
        "error": {"code": "not_found", "message": "conversation not found"},
        "correlation_id": "c-2",
    }


def test_rate_limited_ack_carries_retry_after() -> None:
    ack = error_ack("rate_limited", "slow down", "c-3", retry_after=1.5)
    assert ack["error"] == {"code": "rate_limited", "message": "slow down", "retry_after": 1.5}


class Sample(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    conversation_id: str = Field(min_length=1)
    limit: int = Field(default=50, ge=1, le=100)


def test_parse_payload_ignores_extra_keys() -> None:
    parsed = parse_payload(Sample, {"conversation_id": "c", "correlation_id": "x", "junk": [1]})
    assert parsed.conversation_id == "c" and parsed.limit == 50


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "conversation_id"),
        ({"conversation_id": 5}, "conversation_id"),
        ({"conversation_id": "c", "limit": "5"}, "limit"),
        ({"conversation_id": "c", "limit": True}, "limit"),
        ({"conversation_id": "c", "limit": 101}, "limit"),
    ],
)
def test_parse_payload_names_the_bad_field(payload: dict[str, object], field: str) -> None:
    with pytest.raises(AckError) as caught:
        parse_payload(Sample, payload)
    assert caught.value.code == "invalid"
    assert caught.value.message.startswith(f"{field}: ")
    assert len(caught.value.message) <= 200


@pytest.mark.parametrize("value", ["a", "req-1", "A.b_c:d-9", "x" * 128, str(uuid.uuid4())])
def test_valid_correlation_ids_are_kept(value: str) -> None:
    assert is_valid_correlation_id(value)
    assert correlation_id_or_new(value) == value


@pytest.mark.parametrize("value", [None, "", "x" * 129, "has space", "semi;colon", "é", 5, ["a"], "a\nb"])
def test_invalid_correlation_ids_are_replaced_by_a_uuid(value: object) -> None:
    assert not is_valid_correlation_id(value)
    made = correlation_id_or_new(value)
    assert made != value and uuid.UUID(made).version == 4


@given(st.text(max_size=200))
def test_correlation_id_or_new_is_always_valid(value: str) -> None:
    assert is_valid_correlation_id(correlation_id_or_new(value))
