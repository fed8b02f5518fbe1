"""Taking command payloads apart: control fields, canonical ids and aggregate (stream) ids."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.socket.acks import AckError
from api.socket.commands import (
    canonical_uuid,
    conversation_aggregate,
    create_aggregate,
    split_control_fields,
)
from domain.conversation import conversation_stream_id, direct_conversation_id
from domain.envelope import derive_id
from domain.errors import DomainError


def test_control_fields_are_taken_out() -> None:
    command_id = str(uuid.uuid4())
    parts = split_control_fields({"command_id": command_id, "expected_version": 3, "correlation_id": "c", "body": "hi"})
    assert parts.command_id == command_id
    assert parts.expected_version == 3
    assert parts.payload == {"body": "hi"}


def test_a_missing_command_id_is_made() -> None:
    parts = split_control_fields({"body": "hi"})
    assert uuid.UUID(parts.command_id).version == 4
    assert parts.expected_version is None


def test_command_id_is_canonicalised() -> None:
    value = uuid.uuid4()
    assert split_control_fields({"command_id": str(value).upper()}).command_id == str(value)


@pytest.mark.parametrize("command_id", ["", "not-a-uuid", 5, 1.5, ["x"], {"a": 1}, True, "1" * 65])
def test_a_malformed_command_id_is_invalid(command_id: object) -> None:
    with pytest.raises(AckError) as caught:
        split_control_fields({"command_id": command_id})
    assert caught.value.code == "invalid" and caught.value.message.startswith("command_id")


@pytest.mark.parametrize("version", [0, 1, 2**40])
def test_expected_version_accepts_non_negative_ints(version: int) -> None:
    assert split_control_fields({"expected_version": version}).expected_version == version


@pytest.mark.parametrize("version", [-1, True, False, 1.0, "1", [1], 2**64])
def test_expected_version_refuses_everything_else(version: object) -> None:
    with pytest.raises(AckError) as caught:
        split_control_fields({"expected_version": version})
    assert caught.value.code == "invalid" and caught.value.message.startswith("expected_version")


def test_null_expected_version_means_absent() -> None:
    assert split_control_fields({"expected_version": None}).expected_version is None


@given(st.dictionaries(st.text(max_size=20), st.none() | st.integers() | st.text(max_size=20), max_size=8))
def test_split_either_refuses_as_invalid_or_drops_only_control_fields(raw: dict[str, object]) -> None:
    try:
        parts = split_control_fields(raw)
    except AckError as exc:
        assert exc.code == "invalid"
        return
    control = ("command_id", "expected_version", "correlation_id")
    assert parts.payload == {k: v for k, v in raw.items() if k not in control}


def test_canonical_uuid() -> None:
    value = uuid.uuid4()
    assert canonical_uuid(str(value)) == str(value)
    assert canonical_uuid(value.hex) == str(value)
    assert canonical_uuid("nope") is None
    assert canonical_uuid(None) is None


def test_conversation_aggregate_is_the_conversation_stream() -> None:
    cid = uuid.uuid4()
    payload: dict[str, object] = {"conversation_id": str(cid).upper()}
    assert conversation_aggregate("actor", "cmd", payload) == conversation_stream_id(str(cid))
    assert payload["conversation_id"] == str(cid)  # the worker compares it with the stream's id


@pytest.mark.parametrize("conversation_id", ["abc", "", "conversation:x"])
def test_conversation_aggregate_refuses_a_non_uuid(conversation_id: str) -> None:
    with pytest.raises(AckError) as caught:
        conversation_aggregate("actor", "cmd", {"conversation_id": conversation_id})
    assert caught.value.code == "invalid"


def test_direct_conversation_goes_to_the_pairs_stream_whoever_asks() -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    expected = conversation_stream_id(direct_conversation_id(a, b))
    assert create_aggregate(a, "c1", {"kind": "direct", "participant_ids": [b]}) == expected
    assert create_aggregate(b, "c2", {"kind": "direct", "participant_ids": [a, b]}) == expected


def test_group_conversation_id_derives_from_the_command_id() -> None:
    payload = {"kind": "group", "participant_ids": [str(uuid.uuid4())], "title": "t"}
    stream = create_aggregate("actor", "cmd-1", payload)
    assert stream == conversation_stream_id(derive_id("actor|cmd-1", "conversation"))
    assert create_aggregate("actor", "cmd-1", payload) == stream
    assert create_aggregate("actor", "cmd-2", payload) != stream


def test_direct_conversation_needs_exactly_one_other_user() -> None:
    with pytest.raises(DomainError) as caught:
        create_aggregate("a", "c", {"kind": "direct", "participant_ids": ["b", "c"]})
    assert caught.value.code == "invalid"
