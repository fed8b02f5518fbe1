"""The key directory of one user (stream `keys:<user_id>`): per device, the public keys a peer
needs to start an end-to-end encrypted session (X3DH, Signal's prekey server).

Being one stream with a single writer is what makes a one-time prekey go out at most once, ever:
`keys:bundle` is a command of this stream, and its `PrekeysClaimed` event takes the keys it hands
out off the state, whatever the number of gateways and concurrent fetchers. A read model rebuilt
from the log cannot resurrect a claimed key either: the aggregate decides, never the view.

The state stays bounded: at most `MAX_DEVICES` devices, each with at most `MAX_AVAILABLE` one-time
prekeys and the highest one-time key id it ever had (a new key id must exceed it, so a key that
was handed out can never come back under its id).

Only public keys reach this module. Their lengths are checked here (base64 of 32-byte Ed25519 /
X25519 keys, 64-byte signatures); the signature itself is checked by the gateway before the
command is sent (the domain imports no cryptography library).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from domain import catalog as ev
from domain.catalog import CommandPayload, Decision, NewEvent, new_event, parse_command
from domain.envelope import CommandEnvelope, EventEnvelope, iso
from domain.errors import DomainError, conflict, invalid, not_found
from domain.streams import StreamKind, unapplied

STREAM_PREFIX = "keys:"
KEYS = StreamKind(STREAM_PREFIX, "keys")
MAX_DEVICES = 8
MAX_AVAILABLE = 200  # one-time prekeys available per device
MAX_PER_CALL = 100  # one-time prekeys per publish or replenish
MAX_KEY_ID = 2**31 - 1
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64

_DEVICE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


# -- ids -------------------------------------------------------------------------------------------


def keys_stream_id(user_id: str) -> str:
    return KEYS.stream_id(user_id)


def user_id_of(stream_id: str) -> str:
    """The user id in a `keys:<user_id>` stream id; ValueError otherwise."""
    return KEYS.key_of(stream_id)


def keys_user_in(stream_id: str) -> str | None:
    """The user id of a `keys:<user_id>` stream id; None for a stream of another kind."""
    return KEYS.key_in(stream_id)


# -- validation ------------------------------------------------------------------------------------


def decode_base64(value: str, what: str = "value") -> bytes:
    """The bytes of a standard base64 string (padding required); ValueError otherwise."""
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise ValueError(f"{what} must be standard base64") from None


def _sized(size: int, what: str) -> AfterValidator:
    def check(value: str) -> str:
        if len(value) > 4 * ((size + 2) // 3):
            raise ValueError(f"must be the base64 of a {size}-byte {what}")
        if len(decode_base64(value, what)) != size:
            raise ValueError(f"must be the base64 of a {size}-byte {what}")
        return value

    return AfterValidator(check)


def _device_id(value: str) -> str:
    if not _DEVICE_ID.fullmatch(value):
        raise ValueError("must be 1..64 characters of A-Z a-z 0-9 . _ -")
    return value


PublicKey = Annotated[str, _sized(PUBLIC_KEY_BYTES, "public key")]
Signature = Annotated[str, _sized(SIGNATURE_BYTES, "signature")]
DeviceId = Annotated[str, AfterValidator(_device_id)]
KeyId = Annotated[int, Field(ge=0, le=MAX_KEY_ID)]
UserId = Annotated[str, Field(min_length=1, max_length=64)]


class SignedPrekey(BaseModel):
    """A medium-term X25519 prekey and the identity key's Ed25519 signature over its 32 raw bytes."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    key_id: KeyId
    public_key: PublicKey
    signature: Signature


class OneTimePrekey(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    key_id: KeyId
    public_key: PublicKey


def _distinct_ids(keys: list[OneTimePrekey]) -> list[OneTimePrekey]:
    if len({k.key_id for k in keys}) != len(keys):
        raise ValueError("key_id must be distinct")
    return keys


OneTimePrekeys = Annotated[list[OneTimePrekey], Field(max_length=MAX_PER_CALL), AfterValidator(_distinct_ids)]


# -- command payloads ------------------------------------------------------------------------------


class PublishKeys(CommandPayload):
    """`identity_key`: the device's Ed25519 identity (signing) key. `identity_dh_key` (optional): its
    X25519 identity key for the DH steps of X3DH (an extension: the protocol's identity key signs)."""

    device_id: DeviceId
    identity_key: PublicKey
    identity_dh_key: PublicKey | None = None
    signed_prekey: SignedPrekey
    one_time_prekeys: OneTimePrekeys = Field(default_factory=list)


class ReplenishPrekeys(CommandPayload):
    device_id: DeviceId
    one_time_prekeys: Annotated[
        list[OneTimePrekey], Field(min_length=1, max_length=MAX_PER_CALL), AfterValidator(_distinct_ids)
    ]


class FetchBundle(CommandPayload):
    user_id: UserId


COMMAND_MODELS: dict[str, type[CommandPayload]] = {
    "keys:publish": PublishKeys,
    "keys:replenish": ReplenishPrekeys,
    "keys:bundle": FetchBundle,
}


# -- state -----------------------------------------------------------------------------------------


class DeviceKeys(BaseModel):
    model_config = ConfigDict(frozen=True)

    identity_key: str
    identity_dh_key: str | None = None
    signed_prekey: SignedPrekey
    published_at: str
    one_time_prekeys: tuple[OneTimePrekey, ...] = ()  # available, handed out first to last
    highest_key_id: int = -1  # the highest one-time key id this device ever had

    @property
    def available(self) -> int:
        return len(self.one_time_prekeys)


class KeysState(BaseModel):
    """A fold of the user's key events. `version` is the stream version (0: no events)."""

    model_config = ConfigDict(frozen=True)

    aggregate: Literal["keys"] = "keys"
    user_id: str
    version: int = 0
    devices: dict[str, DeviceKeys] = Field(default_factory=dict)

    @property
    def stream_id(self) -> str:
        return keys_stream_id(self.user_id)


def initial_state(stream_id: str) -> KeysState:
    return KeysState(user_id=user_id_of(stream_id))


# -- decide ----------------------------------------------------------------------------------------


def decide(state: KeysState, command: CommandEnvelope) -> Decision:
    """Events for `command`; raises DomainError.

    Order of refusals: invalid payload, unauthorized, forbidden (publishing to another user's
    directory), conflict (expected_version, too many devices), not_found (replenishing an unknown
    device), invalid (key ids, caps).
    """
    model = COMMAND_MODELS.get(command.type)
    if model is None:
        raise invalid(f"unknown command {command.type[:64]!r}")
    payload = parse_command(model, command.payload)
    if command.actor_id is None:
        raise DomainError("unauthorized", "a keys command needs an authenticated user")
    actor = command.actor_id
    if isinstance(payload, FetchBundle):
        if payload.user_id != state.user_id:
            raise invalid("user_id does not match the command's stream")
        _check_version(state, command)
        return _bundle(state, actor)
    if actor != state.user_id:
        raise DomainError("forbidden", "a user publishes keys for their own devices only")
    _check_version(state, command)
    if isinstance(payload, PublishKeys):
        return _publish(state, command, payload)
    assert isinstance(payload, ReplenishPrekeys)
    return _replenish(state, payload)


def _check_version(state: KeysState, command: CommandEnvelope) -> None:
    if command.expected_version is not None and command.expected_version != state.version:
        raise conflict(f"expected version {command.expected_version}, keys are at {state.version}")


def _decision(state: KeysState, events: list[NewEvent], **data: object) -> Decision:
    return Decision(events, {**data, "version": state.version + len(events)})


def _fresh(device: DeviceKeys | None, keys: list[OneTimePrekey]) -> list[OneTimePrekey]:
    """`keys` in key id order, each id above every id the device ever had; DomainError otherwise."""
    highest = device.highest_key_id if device is not None else -1
    ordered = sorted(keys, key=lambda k: k.key_id)
    if ordered and ordered[0].key_id <= highest:
        raise invalid(f"one_time_prekeys: key_id must be greater than {highest} (ids are never reused)")
    return ordered


def _publish(state: KeysState, command: CommandEnvelope, p: PublishKeys) -> Decision:
    device = state.devices.get(p.device_id)
    new_device = device is None
    if new_device and len(state.devices) >= MAX_DEVICES:
        raise conflict(f"a user has at most {MAX_DEVICES} devices")
    identity_changed = device is not None and (
        device.identity_key != p.identity_key or device.identity_dh_key != p.identity_dh_key
    )
    keys = _fresh(device, p.one_time_prekeys)
    # A new device or a new identity replaces the available keys (their private halves belonged to
    # the old install); the same identity keeps them and adds these.
    kept = 0 if device is None or identity_changed else device.available
    if kept + len(keys) > MAX_AVAILABLE:
        raise invalid(f"one_time_prekeys: a device holds at most {MAX_AVAILABLE} available one-time prekeys")
    published = ev.DeviceKeysPublished(
        user_id=state.user_id,
        device_id=p.device_id,
        identity_key=p.identity_key,
        identity_dh_key=p.identity_dh_key,
        signed_prekey=ev.SignedPrekeyPayload(**p.signed_prekey.model_dump()),
        one_time_prekeys=[ev.PrekeyPayload(**k.model_dump()) for k in keys],
        identity_changed=identity_changed,
        new_device=new_device,
        published_at=iso(command.issued_at),
    )
    return _decision(state, [new_event(published)], device_id=p.device_id, one_time_prekeys_available=kept + len(keys))


def _replenish(state: KeysState, p: ReplenishPrekeys) -> Decision:
    device = state.devices.get(p.device_id)
    if device is None:
        raise not_found("device")
    keys = _fresh(device, p.one_time_prekeys)
    if device.available + len(keys) > MAX_AVAILABLE:
        raise invalid(f"one_time_prekeys: a device holds at most {MAX_AVAILABLE} available one-time prekeys")
    added = ev.OneTimePrekeysAdded(
        user_id=state.user_id,
        device_id=p.device_id,
        one_time_prekeys=[ev.PrekeyPayload(**k.model_dump()) for k in keys],
    )
    return _decision(state, [new_event(added)], one_time_prekeys_available=device.available + len(keys))


def _bundle(state: KeysState, actor: str) -> Decision:
    """One bundle per device (in device id order), each with the first available one-time prekey,
    which the `PrekeysClaimed` event takes off the state."""
    devices: list[dict[str, object]] = []
    claims: list[ev.PrekeyClaim] = []
    for device_id in sorted(state.devices):
        device = state.devices[device_id]
        one_time = device.one_time_prekeys[0] if device.one_time_prekeys else None
        if one_time is not None:
            claims.append(ev.PrekeyClaim(device_id=device_id, key_id=one_time.key_id))
        devices.append(
            {
                "device_id": device_id,
                "identity_key": device.identity_key,
                "identity_dh_key": device.identity_dh_key,
                "signed_prekey": device.signed_prekey.model_dump(),
                "one_time_prekey": one_time.model_dump() if one_time is not None else None,
            }
        )
    if not claims:  # nothing taken, nothing appended: no version for an ack to wait on
        return Decision([], {"devices": devices})
    claimed = ev.PrekeysClaimed(user_id=state.user_id, claimed_by=actor, claims=claims)
    return _decision(state, [new_event(claimed)], devices=devices)


# -- evolve ----------------------------------------------------------------------------------------


def evolve(state: KeysState, event: EventEnvelope) -> KeysState:
    """`state` after `event` (upcast first); redeliveries (stream_version <= version) change nothing."""
    fresh = unapplied(state.stream_id, state.version, event)
    if fresh is None:
        return state
    event = fresh
    moved = state.model_copy(update={"version": event.stream_version})
    if event.type not in ev.CATALOG:
        return moved
    match ev.parse_payload(event.type, event.payload):
        case ev.DeviceKeysPublished() as p:
            device = state.devices.get(p.device_id)
            added = tuple(OneTimePrekey(key_id=k.key_id, public_key=k.public_key) for k in p.one_time_prekeys)
            kept = () if device is None or p.identity_changed else device.one_time_prekeys
            highest = max([device.highest_key_id if device else -1, *(k.key_id for k in added)])
            updated = DeviceKeys(
                identity_key=p.identity_key,
                identity_dh_key=p.identity_dh_key,
                signed_prekey=SignedPrekey(**p.signed_prekey.model_dump()),
                published_at=p.published_at,
                one_time_prekeys=kept + added,
                highest_key_id=highest,
            )
            return moved.model_copy(update={"devices": {**state.devices, p.device_id: updated}})
        case ev.OneTimePrekeysAdded() as p:
            device = state.devices.get(p.device_id)
            if device is None:
                return moved
            added = tuple(OneTimePrekey(key_id=k.key_id, public_key=k.public_key) for k in p.one_time_prekeys)
            highest = max([device.highest_key_id, *(k.key_id for k in added)])
            updated = device.model_copy(
                update={"one_time_prekeys": device.one_time_prekeys + added, "highest_key_id": highest}
            )
            return moved.model_copy(update={"devices": {**state.devices, p.device_id: updated}})
        case ev.PrekeysClaimed() as p:
            devices = dict(state.devices)
            for claim in p.claims:
                device = devices.get(claim.device_id)
                if device is None:
                    continue
                left = tuple(k for k in device.one_time_prekeys if k.key_id != claim.key_id)
                devices[claim.device_id] = device.model_copy(update={"one_time_prekeys": left})
            return moved.model_copy(update={"devices": devices})
    return moved
