"""Access and refresh tokens: what verifies and what is refused."""

from __future__ import annotations

import time

import jwt
import pytest

from infra.security.tokens import InvalidToken, TokenService

SECRET = "unit-test-secret-0123456789abcdef-0123"


def service(secret: str = SECRET, access_ttl: int = 900) -> TokenService:
    return TokenService(secret, "HS256", access_ttl_s=access_ttl, refresh_ttl_s=3600)


def test_issued_pair_verifies_with_its_own_type() -> None:
    tokens = service()
    pair = tokens.issue_pair("user-1")
    access = tokens.verify(pair.access_token, "access")
    refresh = tokens.verify(pair.refresh_token, "refresh")
    assert (access.sub, access.typ) == ("user-1", "access")
    assert (refresh.sub, refresh.typ) == ("user-1", "refresh")
    assert access.exp - access.iat == 900
    assert access.jti != refresh.jti
    assert pair.expires_in == 900 and pair.token_type == "bearer"


def test_each_token_is_unique() -> None:
    tokens = service()
    assert tokens.issue("u", "access") != tokens.issue("u", "access")


@pytest.mark.parametrize(("issued", "expected"), [("refresh", "access"), ("access", "refresh")])
def test_wrong_type_is_refused(issued: str, expected: str) -> None:
    tokens = service()
    token = tokens.issue("user-1", issued)  # type: ignore[arg-type]
    with pytest.raises(InvalidToken):
        tokens.verify(token, expected)  # type: ignore[arg-type]


def test_expired_token_is_refused() -> None:
    tokens = service(access_ttl=60)
    token = tokens.issue("user-1", "access", now=time.time() - 120)
    with pytest.raises(InvalidToken):
        tokens.verify(token, "access")


def test_token_signed_with_another_secret_is_refused() -> None:
    forged = service(secret="another-secret-0123456789abcdef-01234").issue("user-1", "access")
    with pytest.raises(InvalidToken):
        service().verify(forged, "access")


def test_tampered_claims_are_refused() -> None:
    token = service().issue("user-1", "access")
    header, payload, signature = token.split(".")
    other = service().issue("user-2", "access").split(".")[1]
    with pytest.raises(InvalidToken):
        service().verify(f"{header}.{other}.{signature}", "access")
    assert payload != other


def test_unsigned_token_is_refused() -> None:
    claims = {"sub": "user-1", "typ": "access", "iat": int(time.time()), "exp": int(time.time()) + 60, "jti": "x"}
    unsigned = jwt.encode(claims, key="", algorithm="none")
    with pytest.raises(InvalidToken):
        service().verify(unsigned, "access")


@pytest.mark.parametrize("missing", ["sub", "typ", "exp", "iat", "jti"])
def test_a_missing_claim_is_refused(missing: str) -> None:
    now = int(time.time())
    claims = {"sub": "user-1", "typ": "access", "iat": now, "exp": now + 60, "jti": "j"}
    del claims[missing]
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken):
        service().verify(token, "access")


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "x" * 5000])
def test_garbage_is_refused(garbage: str) -> None:
    with pytest.raises(InvalidToken):
        service().verify(garbage, "access")


def test_an_empty_secret_is_not_accepted() -> None:
    with pytest.raises(ValueError):
        TokenService("", "HS256", 1, 1)
