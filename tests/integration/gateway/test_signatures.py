"""The Ed25519 signature adapter (``infra.security.signatures``) with real keys from `cryptography`,
and the gateway's check of a published signed prekey (``api.key_directory``) over it."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from api.key_directory import signed_prekey_is_valid
from domain.keys import PublishKeys
from infra.security.signatures import Ed25519Signatures

pytestmark = pytest.mark.integration


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_a_genuine_signature_verifies_and_any_change_does_not() -> None:
    identity = Ed25519PrivateKey.generate()
    prekey = X25519PrivateKey.generate().public_key().public_bytes_raw()
    signature = identity.sign(prekey)
    public = identity.public_key().public_bytes_raw()
    verifier = Ed25519Signatures()
    assert verifier.verify(public, prekey, signature)
    assert not verifier.verify(public, prekey[:-1] + bytes([prekey[-1] ^ 1]), signature)  # another prekey
    assert not verifier.verify(public, prekey, signature[:-1] + bytes([signature[-1] ^ 1]))  # a tampered signature
    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    assert not verifier.verify(other, prekey, signature)  # someone else's identity
    assert not verifier.verify(b"\0" * 31, prekey, signature)  # not a key at all
    assert not verifier.verify(public, prekey, b"\0" * 10)


def test_the_gateway_check_of_a_published_signed_prekey() -> None:
    identity = Ed25519PrivateKey.generate()
    prekey = X25519PrivateKey.generate().public_key().public_bytes_raw()

    def payload(signature: bytes) -> PublishKeys:
        return PublishKeys.model_validate(
            {
                "device_id": "phone",
                "identity_key": b64(identity.public_key().public_bytes_raw()),
                "signed_prekey": {"key_id": 1, "public_key": b64(prekey), "signature": b64(signature)},
            }
        )

    verifier = Ed25519Signatures()
    assert signed_prekey_is_valid(verifier, payload(identity.sign(prekey)))
    assert not signed_prekey_is_valid(verifier, payload(Ed25519PrivateKey.generate().sign(prekey)))
    assert not signed_prekey_is_valid(verifier, payload(identity.sign(b"something else")))
