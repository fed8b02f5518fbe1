"""What the gateway checks of a device's keys before its `keys:publish` command is sent.

The server verifies that the signed prekey is signed by the identity key (an Ed25519 signature over
the prekey's 32 raw public-key bytes), so a directory never serves a bundle a client would refuse.
The check needs a cryptography library, which the domain does not import: it is a port here, with
its adapter in ``infra.security.signatures``. Only public keys ever reach the server.
"""

from __future__ import annotations

from typing import Protocol

from domain.keys import PublishKeys, decode_base64


class SignatureVerifier(Protocol):
    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is ``public_key``'s Ed25519 signature of ``message``."""
        ...


def signed_prekey_is_valid(verifier: SignatureVerifier, keys: PublishKeys) -> bool:
    """Whether the payload's signed prekey carries its identity key's signature (payload already
    validated: the keys are base64 of the right lengths)."""
    return verifier.verify(
        decode_base64(keys.identity_key),
        decode_base64(keys.signed_prekey.public_key),
        decode_base64(keys.signed_prekey.signature),
    )
