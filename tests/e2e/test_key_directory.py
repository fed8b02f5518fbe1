"""The end-to-end encryption key directory over sockets, with real cryptography.

Clients generate their keys with the `cryptography` library (Ed25519 identity, X25519 identity DH
key, signed prekey and one-time prekeys), publish the public halves, fetch each other's bundles and
run an X3DH agreement in the test; the server only ever sees public keys and ciphertext.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pymongo import AsyncMongoClient

from infra.mongo.documents import ProjectionRegistry
from tests.conftest import Platform
from tests.e2e.conftest import Session, Users, parley

pytestmark = pytest.mark.e2e

INFO = b"Parley X3DH test"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def raw(key: X25519PublicKey | Ed25519PublicKey) -> bytes:
    return key.public_bytes_raw()


@dataclass
class Device:
    """A client device: its private keys stay here; `publish_payload` carries public halves only."""

    device_id: str
    identity: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    identity_dh: X25519PrivateKey = field(default_factory=X25519PrivateKey.generate)
    signed_prekey: X25519PrivateKey = field(default_factory=X25519PrivateKey.generate)
    signed_prekey_id: int = 1
    one_time: dict[int, X25519PrivateKey] = field(default_factory=dict)
    next_key_id: int = 1

    def new_one_time(self, count: int) -> list[dict[str, Any]]:
        out = []
        for _ in range(count):
            key = X25519PrivateKey.generate()
            self.one_time[self.next_key_id] = key
            out.append({"key_id": self.next_key_id, "public_key": b64(raw(key.public_key()))})
            self.next_key_id += 1
        return out

    def publish_payload(self, one_time: int = 5, signature: bytes | None = None) -> dict[str, Any]:
        spk = raw(self.signed_prekey.public_key())
        return {
            "device_id": self.device_id,
            "identity_key": b64(raw(self.identity.public_key())),
            "identity_dh_key": b64(raw(self.identity_dh.public_key())),
            "signed_prekey": {
                "key_id": self.signed_prekey_id,
                "public_key": b64(spk),
                "signature": b64(signature if signature is not None else self.identity.sign(spk)),
            },
            "one_time_prekeys": self.new_one_time(one_time),
        }


def kdf(*secrets: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"\0" * 32, info=INFO).derive(
        b"\xff" * 32 + b"".join(secrets)
    )


def initiate(sender: Device, bundle: dict[str, Any], plaintext: bytes) -> bytes:
    """X3DH as the initiator, then AES-GCM: the message blob (header + ciphertext)."""
    identity = Ed25519PublicKey.from_public_bytes(unb64(bundle["identity_key"]))
    spk_bytes = unb64(bundle["signed_prekey"]["public_key"])
    identity.verify(unb64(bundle["signed_prekey"]["signature"]), spk_bytes)  # raises if forged
    spk = X25519PublicKey.from_public_bytes(spk_bytes)
    their_dh = X25519PublicKey.from_public_bytes(unb64(bundle["identity_dh_key"]))
    ephemeral = X25519PrivateKey.generate()
    secrets = [sender.identity_dh.exchange(spk), ephemeral.exchange(their_dh), ephemeral.exchange(spk)]
    otk = bundle["one_time_prekey"]
    if otk is not None:
        secrets.append(ephemeral.exchange(X25519PublicKey.from_public_bytes(unb64(otk["public_key"]))))
    key = kdf(*secrets)
    ad = raw(sender.identity_dh.public_key()) + raw(their_dh)
    nonce = os.urandom(12)
    header = json.dumps(
        {
            "ik": b64(raw(sender.identity_dh.public_key())),
            "ek": b64(raw(ephemeral.public_key())),
            "spk": bundle["signed_prekey"]["key_id"],
            "otk": otk["key_id"] if otk is not None else None,
            "n": b64(nonce),
        }
    ).encode()
    return len(header).to_bytes(2, "big") + header + AESGCM(key).encrypt(nonce, plaintext, ad)


def receive(receiver: Device, blob: bytes, sender_identity_dh: str) -> bytes:
    """X3DH as the responder (the sender's identity DH key as the directory lists it), then decrypt."""
    size = int.from_bytes(blob[:2], "big")
    header = json.loads(blob[2 : 2 + size])
    assert header["ik"] == sender_identity_dh
    their_identity = X25519PublicKey.from_public_bytes(unb64(header["ik"]))
    ephemeral = X25519PublicKey.from_public_bytes(unb64(header["ek"]))
    assert header["spk"] == receiver.signed_prekey_id
    secrets = [
        receiver.signed_prekey.exchange(their_identity),
        receiver.identity_dh.exchange(ephemeral),
        receiver.signed_prekey.exchange(ephemeral),
    ]
    if header["otk"] is not None:
        secrets.append(receiver.one_time.pop(header["otk"]).exchange(ephemeral))  # used once, then deleted
    key = kdf(*secrets)
    ad = raw(their_identity) + raw(receiver.identity_dh.public_key())
    return AESGCM(key).decrypt(unb64(header["n"]), blob[2 + size :], ad)


async def direct(a: Session, b: Session) -> str:
    data = await a.ok("conversation:create", {"kind": "direct", "participant_ids": [b.user_id]})
    return str(data["conversation_id"])


def otk_ids(bundle: dict[str, Any]) -> list[int | None]:
    return [d["one_time_prekey"]["key_id"] if d["one_time_prekey"] else None for d in bundle["devices"]]


# -- X3DH through the directory, and an E2E message through message:send ---------------------------


async def test_two_clients_agree_on_a_secret_and_exchange_an_e2e_message(users: Users) -> None:
    alice, bob, carol = await users.new(), await users.new(), await users.new()
    alice_phone, bob_phone = Device("phone"), Device("phone")
    published = await alice.ok("keys:publish", alice_phone.publish_payload())
    assert published == {"device_id": "phone", "one_time_prekeys_available": 5, "version": 1}
    assert (await bob.ok("keys:publish", bob_phone.publish_payload(one_time=3)))["one_time_prekeys_available"] == 3

    listed = await carol.ok("keys:devices", {"user_id": bob.user_id})
    assert [(d["device_id"], d["identity_key"]) for d in listed["devices"]] == [
        ("phone", b64(raw(bob_phone.identity.public_key())))
    ]
    assert listed["devices"][0]["published_at"]

    # A third user takes one of Bob's one-time prekeys; Alice gets another one.
    carols = await carol.ok("keys:bundle", {"user_id": bob.user_id})
    command_id = str(uuid.uuid4())
    bundle = await alice.ok("keys:bundle", {"user_id": bob.user_id, "command_id": command_id})
    assert otk_ids(carols) == [1] and otk_ids(bundle) == [2]
    again = await alice.ok("keys:bundle", {"user_id": bob.user_id, "command_id": command_id})
    assert again == bundle  # the remembered outcome: no other key is taken
    device = bundle["devices"][0]
    assert device["identity_key"] == b64(raw(bob_phone.identity.public_key()))
    assert set(device) >= {"device_id", "identity_key", "signed_prekey", "one_time_prekey"}

    conversation = await direct(alice, bob)
    plaintext = "the eagle lands at dawn 🦅".encode()
    blob = initiate(alice_phone, device, plaintext)
    ciphertext = b64(blob)
    sent = await alice.ok("message:send", {"conversation_id": conversation, "ciphertext": ciphertext})

    pushed = await bob.inbox.wait_for("message:new", lambda d: d["message_id"] == sent["message_id"])
    assert pushed["ciphertext"] == ciphertext and pushed["body"] is None
    history = await bob.ok("message:history", {"conversation_id": conversation})
    stored = history["messages"][0]
    assert (stored["message_id"], stored["ciphertext"], stored["body"]) == (sent["message_id"], ciphertext, None)

    alice_dh = (await bob.ok("keys:devices", {"user_id": alice.user_id}))["devices"][0]["identity_dh_key"]
    assert receive(bob_phone, unb64(pushed["ciphertext"]), alice_dh) == plaintext
    assert 2 not in bob_phone.one_time  # Bob deleted the private half of the key Alice used

    # An E2E message is edited with a new ciphertext, never a body; exactly one of the two is sent.
    edited = b64(initiate(alice_phone, {**device, "one_time_prekey": None}, b"corrected"))
    edit = {"conversation_id": conversation, "message_id": sent["message_id"]}
    assert await alice.error("message:edit", {**edit, "body": "plain"}) == "invalid"
    await alice.ok("message:edit", {**edit, "ciphertext": edited})
    shown = await bob.inbox.wait_for("message:edited", lambda d: d["message_id"] == sent["message_id"])
    assert shown["ciphertext"] == edited and shown["body"] is None
    assert receive(bob_phone, unb64(shown["ciphertext"]), alice_dh) == b"corrected"
    both = {"conversation_id": conversation, "body": "x", "ciphertext": ciphertext}
    assert await alice.error("message:send", both) == "invalid"
    assert (
        await alice.error("message:send", {"conversation_id": conversation, "ciphertext": "not base64!"}) == "invalid"
    )
    too_big = b64(b"\0" * (64 * 1024 + 1))
    assert await alice.error("message:send", {"conversation_id": conversation, "ciphertext": too_big}) == "invalid"


async def test_a_bad_signature_or_malformed_key_is_refused(users: Users) -> None:
    mallory = await users.new()
    device = Device("laptop")
    forged = Ed25519PrivateKey.generate().sign(raw(device.signed_prekey.public_key()))
    assert await mallory.error("keys:publish", device.publish_payload(signature=forged)) == "invalid"
    good = device.publish_payload()
    short = {**good, "identity_key": b64(b"\1" * 31)}
    assert await mallory.error("keys:publish", short) == "invalid"
    assert await mallory.error("keys:publish", {**good, "device_id": "has space"}) == "invalid"
    assert await mallory.error("keys:publish", {**good, "identity_key": "%%%"}) == "invalid"
    # Nothing was published by the refusals.
    assert (await mallory.ok("keys:devices", {"user_id": mallory.user_id})) == {"devices": []}
    assert (await mallory.ok("keys:bundle", {"user_id": mallory.user_id})) == {"devices": []}
    await mallory.ok("keys:publish", good)
    unknown_device = {"device_id": "tablet", "one_time_prekeys": device.new_one_time(1)}
    assert await mallory.error("keys:replenish", unknown_device) == "not_found"
    assert await mallory.error("keys:bundle", {"user_id": str(uuid.uuid4())}) == "not_found"
    assert await mallory.error("keys:devices", {"user_id": str(uuid.uuid4())}) == "not_found"


# -- one-time prekeys are handed out at most once --------------------------------------------------


async def test_concurrent_fetchers_never_get_the_same_one_time_prekey(users: Users) -> None:
    bob, alice, carol = await users.new(), await users.new(), await users.new()
    phone, laptop = Device("phone"), Device("laptop")
    await bob.ok("keys:publish", phone.publish_payload(one_time=6))
    await bob.ok("keys:publish", laptop.publish_payload(one_time=3))

    async def fetch(session: Session) -> dict[str, Any]:
        return await session.ok("keys:bundle", {"user_id": bob.user_id})

    bundles = await asyncio.gather(*(fetch(session) for _ in range(5) for session in (alice, carol)))
    handed: dict[str, list[int]] = {"phone": [], "laptop": []}
    nulls = {"phone": 0, "laptop": 0}
    for bundle in bundles:
        assert [d["device_id"] for d in bundle["devices"]] == ["laptop", "phone"]
        for d in bundle["devices"]:
            if d["one_time_prekey"] is None:
                nulls[d["device_id"]] += 1
            else:
                handed[d["device_id"]].append(d["one_time_prekey"]["key_id"])
    assert sorted(handed["phone"]) == [1, 2, 3, 4, 5, 6] and nulls["phone"] == 4
    assert sorted(handed["laptop"]) == [1, 2, 3] and nulls["laptop"] == 7
    devices = {d["device_id"]: d for d in (await alice.ok("keys:devices", {"user_id": bob.user_id}))["devices"]}
    assert devices["phone"]["one_time_prekeys_available"] == 0

    # Exhausted: null, and still the signed prekey; a replenished key id must be new.
    assert otk_ids(await fetch(alice)) == [None, None]
    refused = await bob.call(
        "keys:replenish",
        {
            "device_id": "phone",
            "one_time_prekeys": [{"key_id": 3, "public_key": b64(raw(X25519PrivateKey.generate().public_key()))}],
        },
    )
    assert refused["ok"] is False and refused["error"]["code"] == "invalid"
    added = await bob.ok("keys:replenish", {"device_id": "phone", "one_time_prekeys": phone.new_one_time(2)})
    assert added["one_time_prekeys_available"] == 2
    assert otk_ids(await fetch(carol)) == [None, 7]


# -- keys:changed ----------------------------------------------------------------------------------


async def test_keys_changed_reaches_conversation_partners_only(users: Users) -> None:
    bob, alice, stranger = await users.new(), await users.new(), await users.new()
    await direct(alice, bob)
    phone = Device("phone")
    await bob.ok("keys:publish", phone.publish_payload())
    first = await alice.inbox.wait_for("keys:changed", lambda d: d["user_id"] == bob.user_id)
    assert (first["device_id"], first["new_device"], first["identity_changed"]) == ("phone", True, False)
    await bob.inbox.wait_for("keys:changed", lambda d: d["device_id"] == "phone")  # the user's own sockets too

    phone.signed_prekey, phone.signed_prekey_id = X25519PrivateKey.generate(), 2
    await bob.ok("keys:publish", phone.publish_payload())  # same identity, new signed prekey: no push
    reinstalled = Device("phone")
    own = (await bob.ok("keys:devices", {"user_id": bob.user_id}))["devices"][0]
    assert own["highest_key_id"] == 10  # a reinstall learns where its key ids must start
    reinstalled.next_key_id = own["highest_key_id"] + 1
    await bob.ok("keys:publish", reinstalled.publish_payload())
    changed = await alice.inbox.wait_for("keys:changed", lambda d: d["identity_changed"])
    assert (changed["user_id"], changed["device_id"], changed["new_device"]) == (bob.user_id, "phone", False)
    await bob.ok("keys:publish", Device("laptop").publish_payload())
    await alice.inbox.wait_for("keys:changed", lambda d: d["device_id"] == "laptop")

    seen = [(d["device_id"], d["identity_changed"], d["new_device"]) for d in alice.inbox.of("keys:changed")]
    assert seen == [("phone", False, True), ("phone", True, False), ("laptop", False, True)]
    # Each push went out as one message to every recipient's room: the stranger's would be here by now.
    assert stranger.inbox.of("keys:changed") == []


# -- rebuild ---------------------------------------------------------------------------------------


async def test_rebuilding_keys_gives_the_same_view_and_no_claimed_key_back(platform: Platform, users: Users) -> None:
    bob, alice = await users.new(), await users.new()
    phone = Device("phone")
    await bob.ok("keys:publish", phone.publish_payload(one_time=4))
    claimed = [otk_ids(await alice.ok("keys:bundle", {"user_id": bob.user_id}))[0] for _ in range(2)]
    assert claimed == [1, 2]
    await bob.ok("keys:replenish", {"device_id": "phone", "one_time_prekeys": phone.new_one_time(1)})

    settings = platform.settings
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo_url)
    try:
        registry = ProjectionRegistry(client[settings.mongo_db], cache_seconds=0)
        db = client[settings.mongo_db]
        before_collection = await registry.live_collection("keys")
        before = await db[before_collection].find_one({"_id": bob.user_id})
        assert before is not None and before["devices"]["phone"]["one_time_prekeys_available"] == 3

        rebuilt = parley(platform, "projections", "rebuild", "keys")
        assert rebuilt.returncode == 0, rebuilt.stderr
        after_collection = await registry.live_collection("keys")
        assert after_collection != before_collection
        assert await db[after_collection].find_one({"_id": bob.user_id}) == before
    finally:
        await client.close()

    status = parley(platform, "projections", "status", "--json")
    assert status.returncode == 0, status.stderr
    assert "keys" in {row["name"] for row in json.loads(status.stdout)}
    # The aggregate decides: what was handed out before the rebuild never comes back.
    rest = [otk_ids(await alice.ok("keys:bundle", {"user_id": bob.user_id}))[0] for _ in range(4)]
    assert rest == [3, 4, 5, None]
