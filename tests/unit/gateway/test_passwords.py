"""Argon2 password hashing."""

from __future__ import annotations

from argon2 import PasswordHasher

from infra.security.passwords import Passwords

# Cheap parameters: these tests check behaviour, not cost.
FAST = Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


def test_hash_verifies_the_right_password_only() -> None:
    stored = FAST.hash("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert "correct horse" not in stored
    assert FAST.verify(stored, "correct horse battery")
    assert not FAST.verify(stored, "correct horse batterY")
    assert not FAST.verify(stored, "")


def test_same_password_hashes_differently() -> None:
    assert FAST.hash("password123") != FAST.hash("password123")


def test_malformed_hash_is_a_mismatch_not_an_error() -> None:
    assert not FAST.verify("not-a-hash", "password123")


def test_unknown_user_never_verifies() -> None:
    assert not FAST.verify_or_dummy(None, "password123")
    assert not FAST.verify_or_dummy(None, "dummy password, never matches a login")


async def test_async_variants() -> None:
    stored = await FAST.hash_async("password123")
    assert await FAST.verify_async(stored, "password123")
    assert not await FAST.verify_async(stored, "password124")
    assert not await FAST.verify_async(None, "password123")
