"""The bounded packet decoder: deep or broken JSON keeps the packet's ack id and gets a marker
payload (acked ``invalid`` by the runner), never a dropped packet."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from socketio import packet as sio_packet

from api.socket.packets import MAX_JSON_DEPTH, BoundedPacket, UndecodablePayload, nested_deeper_than


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def decode(text: str) -> BoundedPacket:
    return BoundedPacket(encoded_packet=text)


def test_an_ordinary_event_decodes_as_usual() -> None:
    pkt = decode('27["message:send",{"conversation_id":"c","body":"[[[{{{"}]')
    assert (pkt.packet_type, pkt.id, pkt.namespace) == (sio_packet.EVENT, 7, None)
    assert pkt.data == ["message:send", {"conversation_id": "c", "body": "[[[{{{"}]


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH, MAX_JSON_DEPTH + 1, 1000, 100_000])
def test_deep_nesting_keeps_the_event_and_ack_id(depth: int) -> None:
    pkt = decode(f'212["message:send",{nested(depth)}]')
    assert pkt.packet_type == sio_packet.EVENT and pkt.id == 12
    name, payload = pkt.data
    assert name == "message:send"
    assert isinstance(payload, UndecodablePayload) and "nested" in payload.reason


def test_nesting_within_the_bound_is_kept() -> None:
    pkt = decode(f'23["x",{nested(MAX_JSON_DEPTH - 2)}]')
    assert not isinstance(pkt.data[1], UndecodablePayload)


def test_deep_objects_are_bounded_too() -> None:
    pkt = decode('2/chat,4["x",' + '{"a":' * 2000 + "1" + "}" * 2000 + "]")
    assert (pkt.namespace, pkt.id) == ("/chat", 4)
    assert isinstance(pkt.data[1], UndecodablePayload)


@pytest.mark.parametrize("text", ['25["message:send",{"a":', '25{"not":"a list"}', "25[]", "25[1,2]"])
def test_broken_events_still_reach_a_handler(text: str) -> None:
    pkt = decode(text)
    assert pkt.packet_type == sio_packet.EVENT and pkt.id == 5
    assert isinstance(pkt.data[0], str) and isinstance(pkt.data[1], UndecodablePayload)


def test_a_deep_connect_payload_becomes_no_auth() -> None:
    pkt = decode('0{"token":' + nested(5000) + "}")
    assert pkt.packet_type == sio_packet.CONNECT and pkt.data is None


def test_encoding_is_unchanged() -> None:
    assert BoundedPacket(sio_packet.ACK, data=[{"ok": True}], id=3).encode() == '33[{"ok":true}]'


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=30,
)


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    return 0


@given(json_values, st.integers(min_value=0, max_value=8))
def test_nested_deeper_than_agrees_with_a_recursive_depth(value: Any, limit: int) -> None:
    assert nested_deeper_than(value, limit) == (depth_of(value) > limit)
