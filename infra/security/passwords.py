"""Password hashing with Argon2id (argon2-cffi).

Hashing is CPU- and memory-bound on purpose, so the async callers run it in a thread.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


class Passwords:
    """Hash and verify passwords; ``verify_or_dummy`` keeps unknown users as slow as wrong passwords."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        self._dummy: str | None = None

    def hash(self, password: str) -> str:
        return str(self._hasher.hash(password))

    def verify(self, password_hash: str, password: str) -> bool:
        try:
            return bool(self._hasher.verify(password_hash, password))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def verify_or_dummy(self, password_hash: str | None, password: str) -> bool:
        """Verify against the stored hash, or against a dummy one (always False) when there is none."""
        if password_hash is None:
            if self._dummy is None:
                self._dummy = self.hash("dummy password, never matches a login")
            self.verify(self._dummy, password)
            return False
        return self.verify(password_hash, password)

    async def hash_async(self, password: str) -> str:
        return await asyncio.to_thread(self.hash, password)

    async def verify_async(self, password_hash: str | None, password: str) -> bool:
        return await asyncio.to_thread(self.verify_or_dummy, password_hash, password)
