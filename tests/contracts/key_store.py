"""The KeyStore contract (infra/security/shredding.py), run against every adapter of it, and the
in-memory fake the unit tests give a ``KeyRing``.

What the key ring relies on: ``create`` never replaces a record (a key another worker created
first stands, and so does a tombstone), and ``destroy`` leaves a tombstone whether or not there
was a record, any number of times. A tombstone is a record whose ``wrapped`` is None."""

from __future__ import annotations

import os
import uuid
from collections.abc import Collection

from infra.security.shredding import KeyStore, StoredKey


class InMemoryKeyStore:
    """In-memory fake of the key store port (unit tests only): ``records`` maps a user to their
    wrapped key, or to None once erased; ``loads`` records the ids of every ``load``."""

    def __init__(self) -> None:
        self.records: dict[str, bytes | None] = {}
        self.loads: list[list[str]] = []

    async def load(self, user_ids: Collection[str]) -> dict[str, StoredKey]:
        asked = list(user_ids)
        self.loads.append(asked)
        return {uid: StoredKey(uid, self.records[uid]) for uid in asked if uid in self.records}

    async def create(self, user_id: str, wrapped: bytes) -> StoredKey:
        if user_id not in self.records:
            self.records[user_id] = wrapped
        return StoredKey(user_id, self.records[user_id])

    async def destroy(self, user_id: str) -> None:
        self.records[user_id] = None


def fresh_user() -> str:
    return f"contract-{uuid.uuid4()}"


def wrapped_key() -> bytes:
    return os.urandom(40)  # the size of an AES key wrap of a 32-byte key


class KeyStoreContract:
    """Subclasses provide a ``store`` fixture."""

    async def test_a_user_without_a_record_is_absent_from_a_load(self, store: KeyStore) -> None:
        assert await store.load([fresh_user(), fresh_user()]) == {}
        assert await store.load([]) == {}

    async def test_what_is_created_is_loaded_back(self, store: KeyStore) -> None:
        user, other, wrapped = fresh_user(), fresh_user(), wrapped_key()
        assert await store.create(user, wrapped) == StoredKey(user, wrapped)
        assert await store.load([user, other]) == {user: StoredKey(user, wrapped)}

    async def test_create_keeps_an_existing_record(self, store: KeyStore) -> None:
        user, first = fresh_user(), wrapped_key()
        await store.create(user, first)
        assert await store.create(user, wrapped_key()) == StoredKey(user, first), "the first key stands"
        assert await store.load([user]) == {user: StoredKey(user, first)}

    async def test_destroy_leaves_a_tombstone(self, store: KeyStore) -> None:
        user, other = fresh_user(), fresh_user()
        await store.create(user, wrapped_key())
        other_wrapped = wrapped_key()
        await store.create(other, other_wrapped)
        await store.destroy(user)
        assert await store.load([user, other]) == {user: StoredKey(user, None), other: StoredKey(other, other_wrapped)}

    async def test_destroy_is_idempotent(self, store: KeyStore) -> None:
        user = fresh_user()
        await store.create(user, wrapped_key())
        await store.destroy(user)
        await store.destroy(user)
        assert await store.load([user]) == {user: StoredKey(user, None)}

    async def test_destroy_without_a_record_leaves_a_tombstone(self, store: KeyStore) -> None:
        user = fresh_user()
        await store.destroy(user)
        assert await store.load([user]) == {user: StoredKey(user, None)}

    async def test_create_after_destroy_returns_the_tombstone(self, store: KeyStore) -> None:
        user = fresh_user()
        await store.create(user, wrapped_key())
        await store.destroy(user)
        assert await store.create(user, wrapped_key()) == StoredKey(user, None), "no key is created again"
        assert await store.load([user]) == {user: StoredKey(user, None)}
