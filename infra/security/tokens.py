"""JWT access and refresh tokens (PyJWT, HMAC).

Each token carries ``sub`` (the user id), ``typ`` ("access" or "refresh"), ``iat``, ``exp``
and a unique ``jti``. Verification requires all of them, the expected type, a valid
signature and an unexpired ``exp``; anything else is :class:`InvalidToken`.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Literal

import jwt

TokenType = Literal["access", "refresh"]
_REQUIRED = ["sub", "typ", "iat", "exp", "jti"]


class InvalidToken(Exception):
    """A token that is malformed, forged, expired or of the wrong type."""


@dataclass(frozen=True)
class Claims:
    sub: str
    typ: TokenType
    iat: int
    exp: int
    jti: str


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int  # seconds the access token lives
    token_type: str = "bearer"


class TokenService:
    def __init__(self, secret: str, algorithm: str, access_ttl_s: int, refresh_ttl_s: int) -> None:
        if not secret:
            raise ValueError("a token secret is required")
        self._secret = secret
        self._algorithm = algorithm
        self.access_ttl_s = access_ttl_s
        self.refresh_ttl_s = refresh_ttl_s

    def issue(self, user_id: str, typ: TokenType, *, now: float | None = None) -> str:
        issued = int(time.time() if now is None else now)
        ttl = self.access_ttl_s if typ == "access" else self.refresh_ttl_s
        claims = {"sub": user_id, "typ": typ, "iat": issued, "exp": issued + ttl, "jti": uuid.uuid4().hex}
        return jwt.encode(claims, self._secret, algorithm=self._algorithm)

    def issue_pair(self, user_id: str) -> TokenPair:
        return TokenPair(
            access_token=self.issue(user_id, "access"),
            refresh_token=self.issue(user_id, "refresh"),
            expires_in=self.access_ttl_s,
        )

    def verify(self, token: str, expected: TokenType) -> Claims:
        try:
            raw = jwt.decode(token, self._secret, algorithms=[self._algorithm], options={"require": _REQUIRED})
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from exc
        if raw.get("typ") != expected:
            raise InvalidToken(f"expected a {expected} token")
        sub, jti = raw.get("sub"), raw.get("jti")
        if not isinstance(sub, str) or not sub or not isinstance(jti, str):
            raise InvalidToken("malformed claims")
        return Claims(sub=sub, typ=expected, iat=int(raw["iat"]), exp=int(raw["exp"]), jti=jti)
