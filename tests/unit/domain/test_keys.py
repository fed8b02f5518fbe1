"""The key directory aggregate (stream `keys:<user_id>`): payload validation, the rules of publish,
replenish and bundle, and a random sequence of them checked against a small model: no one-time
prekey is ever handed out twice and the available counts stay consistent."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from domain.catalog import CATALOG, parse_payload
from domain.keys import MAX_AVAILABLE, MAX_DEVICES, MAX_PER_CALL, KeysState, keys_stream_id
from tests.unit.domain.harness import Result, Stream, command, fold

BOB = "user-bob"
ALICE = "user-alice"
STREAM = keys_stream_id(BOB)


def key(seed: int, size: int = 32) -> str:
    return base64.b64encode(seed.to_bytes(4, "big") * (size // 4)).decode()


def prekeys(first: int, count: int) -> list[dict[str, Any]]:
    return [{"key_id": i, "public_key": key(i + 1000)} for i in range(first, first + count)]


def publish_payload(device: str = "phone", identity: int = 1, first: int = 1, count: int = 3) -> dict[str, Any]:
    return {
        "device_id": device,
        "identity_key": key(identity),
        "signed_prekey": {"key_id": 1, "public_key": key(500), "signature": key(7, 64)},
        "one_time_prekeys": prekeys(first, count),
    }


def run(stream: Stream, type_: str, actor: str, payload: dict[str, Any], **kw: Any) -> Result:
    return stream.run(command(type_, actor, stream.stream_id, payload, **kw))


def bundle(stream: Stream, actor: str = ALICE, **kw: Any) -> Result:
    return run(stream, "keys:bundle", actor, {"user_id": BOB}, **kw)


def otk(result: Result, device: str = "phone") -> int | None:
    found = next(d for d in result.data["devices"] if d["device_id"] == device)["one_time_prekey"]
    return None if found is None else int(found["key_id"])


# -- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"device_id": ""}, "device_id"),
        ({"device_id": "a b"}, "device_id"),
        ({"device_id": "x" * 65}, "device_id"),
        ({"identity_key": key(1, 28)}, "identity_key"),  # 28 bytes
        ({"identity_key": "AAAA"}, "identity_key"),
        ({"identity_key": "not base64!"}, "identity_key"),
        ({"identity_key": key(1).rstrip("=")}, "identity_key"),  # padding required
        ({"signed_prekey": {"key_id": 1, "public_key": key(2), "signature": key(3)}}, "signed_prekey"),  # 32 bytes
        ({"signed_prekey": {"key_id": -1, "public_key": key(2), "signature": key(3, 64)}}, "signed_prekey"),
        ({"one_time_prekeys": [{"key_id": 1, "public_key": key(2)}] * 2}, "one_time_prekeys"),
        ({"one_time_prekeys": prekeys(1, MAX_PER_CALL + 1)}, "one_time_prekeys"),
        ({"identity_dh_key": key(9, 16)}, "identity_dh_key"),
    ],
)
def test_publish_payload_is_validated(change: dict[str, Any], where: str) -> None:
    stream = Stream(STREAM)
    result = run(stream, "keys:publish", BOB, {**publish_payload(), **change})
    assert (result.ok, result.code) == (False, "invalid")
    assert result.message is not None and result.message.startswith(where)
    assert stream.log == []


def test_publish_then_bundle_hands_out_each_key_once() -> None:
    stream = Stream(STREAM)
    published = run(stream, "keys:publish", BOB, publish_payload(count=2))
    assert published.data == {"device_id": "phone", "one_time_prekeys_available": 2, "version": 1}
    first, second, third = bundle(stream), bundle(stream, "user-carol"), bundle(stream)
    assert [otk(first), otk(second), otk(third)] == [1, 2, None]
    assert [e.type for e in stream.log] == ["DeviceKeysPublished", "PrekeysClaimed", "PrekeysClaimed"]
    assert third.events == ()  # nothing left to claim: nothing appended
    device = third.data["devices"][0]
    assert device["identity_key"] == key(1) and device["signed_prekey"]["public_key"] == key(500)


def test_a_repeated_bundle_command_is_the_same_bundle() -> None:
    stream = Stream(STREAM)
    run(stream, "keys:publish", BOB, publish_payload())
    first = bundle(stream, command_id="11111111-1111-4111-8111-111111111111")
    again = bundle(stream, command_id="11111111-1111-4111-8111-111111111111")
    assert again == first and otk(bundle(stream)) == 2


def test_key_ids_are_never_reused() -> None:
    stream = Stream(STREAM)
    run(stream, "keys:publish", BOB, publish_payload(first=1, count=3))
    bundle(stream)
    stale = run(stream, "keys:replenish", BOB, {"device_id": "phone", "one_time_prekeys": prekeys(3, 2)})
    assert (stale.ok, stale.code) == (False, "invalid")
    # A new identity on the device replaces its keys, and still may not reuse an id.
    again = run(stream, "keys:publish", BOB, publish_payload(identity=2, first=1, count=1))
    assert (again.ok, again.code) == (False, "invalid")
    fresh = run(stream, "keys:publish", BOB, publish_payload(identity=2, first=10, count=1))
    assert fresh.data["one_time_prekeys_available"] == 1
    assert fresh.events[0].payload["identity_changed"] is True
    assert otk(bundle(stream)) == 10


def test_same_identity_adds_a_new_identity_replaces() -> None:
    stream = Stream(STREAM)
    run(stream, "keys:publish", BOB, publish_payload(count=3))
    same = run(stream, "keys:publish", BOB, publish_payload(first=4, count=2))
    assert same.data["one_time_prekeys_available"] == 5
    assert (same.events[0].payload["identity_changed"], same.events[0].payload["new_device"]) == (False, False)
    laptop = run(stream, "keys:publish", BOB, publish_payload(device="laptop", identity=3))
    assert laptop.events[0].payload["new_device"] is True


def test_refusals() -> None:
    stream = Stream(STREAM)
    assert run(stream, "keys:publish", ALICE, publish_payload()).code == "forbidden"
    unknown = run(stream, "keys:replenish", BOB, {"device_id": "phone", "one_time_prekeys": prekeys(1, 1)})
    assert unknown.code == "not_found"
    assert bundle(stream).data == {"devices": []}
    other_user = run(stream, "keys:bundle", ALICE, {"user_id": "someone-else"})
    assert other_user.code == "invalid"
    for n in range(MAX_DEVICES):
        assert run(stream, "keys:publish", BOB, publish_payload(device=f"d{n}", count=0)).ok
    assert run(stream, "keys:publish", BOB, publish_payload(device="one-too-many")).code == "conflict"
    assert run(stream, "keys:publish", BOB, publish_payload(device="d0", count=0), expected_version=3).code == (
        "conflict"
    )


def test_available_prekeys_are_capped() -> None:
    stream = Stream(STREAM)
    run(stream, "keys:publish", BOB, publish_payload(count=MAX_PER_CALL))
    run(stream, "keys:replenish", BOB, {"device_id": "phone", "one_time_prekeys": prekeys(101, MAX_PER_CALL)})
    over = run(stream, "keys:replenish", BOB, {"device_id": "phone", "one_time_prekeys": prekeys(201, 1)})
    assert (over.ok, over.code) == (False, "invalid")
    assert isinstance(stream.state, KeysState) and stream.state.devices["phone"].available == MAX_AVAILABLE


# -- random sequences ------------------------------------------------------------------------------

DEVICES = ("phone", "laptop", "tablet")


class KeysMachine(RuleBasedStateMachine):
    """Publish, replenish and bundle in any order; the model says what is available per device."""

    def __init__(self) -> None:
        super().__init__()
        self.stream = Stream(STREAM)
        self.available: dict[str, list[int]] = {}
        self.identity: dict[str, int] = {}
        self.next_id: dict[str, int] = {}
        self.handed: set[tuple[str, int, int]] = set()  # (device, identity, key id)
        self.handed_ids: dict[str, set[int]] = {}

    def _fresh(self, device: str, count: int, reuse: bool) -> list[dict[str, Any]]:
        first = self.next_id.get(device, 1)
        if reuse and first > 1:
            first -= 1  # an id the device had: must be refused
        return prekeys(first, count)

    @rule(device=st.sampled_from(DEVICES), new_identity=st.booleans(), count=st.integers(0, 6), reuse=st.booleans())
    def publish(self, device: str, new_identity: bool, count: int, reuse: bool) -> None:
        identity = self.identity.get(device, 0) + (1 if new_identity or device not in self.identity else 0)
        keys = self._fresh(device, count, reuse)
        payload = {**publish_payload(device=device, identity=identity), "one_time_prekeys": keys}
        result = run(self.stream, "keys:publish", BOB, payload)
        refused_reuse = reuse and count > 0 and self.next_id.get(device, 1) > 1
        assert result.ok is not refused_reuse, result
        if not result.ok:
            assert result.code == "invalid"
            return
        replaced = device not in self.identity or identity != self.identity[device]
        ids = [k["key_id"] for k in keys]
        self.available[device] = ids if replaced else self.available[device] + ids
        self.identity[device] = identity
        if ids:
            self.next_id[device] = max(ids) + 1
        assert result.data["one_time_prekeys_available"] == len(self.available[device])

    @rule(device=st.sampled_from(DEVICES), count=st.integers(1, 6), reuse=st.booleans())
    def replenish(self, device: str, count: int, reuse: bool) -> None:
        keys = self._fresh(device, count, reuse)
        result = run(self.stream, "keys:replenish", BOB, {"device_id": device, "one_time_prekeys": keys})
        if device not in self.identity:
            assert result.code == "not_found"
            return
        if reuse and self.next_id.get(device, 1) > 1:
            assert result.code == "invalid"
            return
        assert result.ok, result
        self.available[device] += [k["key_id"] for k in keys]
        self.next_id[device] = keys[-1]["key_id"] + 1
        assert result.data["one_time_prekeys_available"] == len(self.available[device])

    @rule(fetcher=st.sampled_from((ALICE, "user-carol", BOB)))
    def fetch(self, fetcher: str) -> None:
        result = bundle(self.stream, fetcher)
        assert result.ok
        assert [d["device_id"] for d in result.data["devices"]] == sorted(self.identity)
        for d in result.data["devices"]:
            device = d["device_id"]
            expected = self.available[device][0] if self.available[device] else None
            assert otk(result, device) == expected
            if expected is not None:
                self.available[device].pop(0)
                assert expected not in self.handed_ids.setdefault(device, set()), "handed out twice"
                self.handed_ids[device].add(expected)

    @invariant()
    def state_matches_the_model_and_the_log(self) -> None:
        state = self.stream.state
        assert isinstance(state, KeysState)
        assert {d: [k.key_id for k in v.one_time_prekeys] for d, v in state.devices.items()} == self.available
        assert fold(STREAM, self.stream.log) == state  # replay gives the same state
        for event in self.stream.log[-2:]:
            assert CATALOG[event.type].aggregate == "keys"
            parse_payload(event.type, event.payload)


TestKeysMachine = KeysMachine.TestCase
