"""HTTP of the running platform: registration, login, refresh, health, readiness, metrics."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.conftest import PASSWORD, Users, connect, login, register, unique_name

pytestmark = pytest.mark.e2e


async def test_register_then_login_right_away(http: httpx.AsyncClient) -> None:
    name = unique_name("Reg")
    r = await register(http, name, display_name="Reggie")
    assert r.status_code == 201
    body = r.json()
    assert set(body) == {"user_id", "username"} and body["username"] == name
    tokens = await login(http, name.lower())  # usernames are case-insensitive
    assert tokens.status_code == 200
    got = tokens.json()
    assert got["token_type"] == "bearer" and got["expires_in"] > 0
    assert got["access_token"] and got["refresh_token"] and got["access_token"] != got["refresh_token"]


async def test_a_taken_username_is_409_in_any_case(http: httpx.AsyncClient) -> None:
    name = unique_name("taken")
    assert (await register(http, name)).status_code == 201
    assert (await register(http, name)).status_code == 409
    assert (await register(http, name.upper(), password="another password")).status_code == 409
    fullwidth = "".join(chr(ord(c) + 0xFEE0) for c in name.upper())  # the same name after NFKC + casefold
    assert (await register(http, fullwidth, password="another password")).status_code == 409


@pytest.mark.parametrize(
    "body",
    [
        {"username": "ab", "password": PASSWORD},
        {"username": "white space", "password": PASSWORD},
        {"username": "ok-name", "password": "short"},
        {"username": "ok-name"},
        {"password": PASSWORD},
        {"username": ["list"], "password": PASSWORD},
    ],
)
async def test_invalid_registrations_are_422(http: httpx.AsyncClient, body: dict[str, object]) -> None:
    assert (await http.post("/auth/register", json=body)).status_code == 422


async def test_wrong_password_and_unknown_user_look_the_same(http: httpx.AsyncClient) -> None:
    name = unique_name()
    assert (await register(http, name)).status_code == 201
    wrong = await login(http, name, "not the password")
    unknown = await login(http, unique_name("ghost"), PASSWORD)
    invalid_name = await login(http, "x y", PASSWORD)
    assert wrong.status_code == unknown.status_code == invalid_name.status_code == 401
    assert wrong.json() == unknown.json() == invalid_name.json()


async def test_refresh_gives_working_tokens(users: Users, http: httpx.AsyncClient) -> None:
    session = await users.new(connected=False)
    r = await http.post("/auth/refresh", json={"refresh_token": session.refresh_token})
    assert r.status_code == 200
    fresh = r.json()
    assert set(fresh) == {"access_token", "refresh_token", "token_type", "expires_in"}
    client = await connect(users.base_url, fresh["access_token"])
    try:
        assert client.connected
    finally:
        await client.disconnect()


@pytest.mark.parametrize("which", ["access", "garbage", "empty"])
async def test_refresh_refuses_anything_but_a_refresh_token(users: Users, http: httpx.AsyncClient, which: str) -> None:
    session = await users.new(connected=False)
    token = {"access": session.access_token, "garbage": "x.y.z", "empty": ""}[which]
    r = await http.post("/auth/refresh", json={"refresh_token": token})
    assert r.status_code in (401, 422) if which == "empty" else r.status_code == 401


async def test_health_ready_and_metrics(http: httpx.AsyncClient) -> None:
    assert (await http.get("/health")).json() == {"status": "ok"}
    ready = await http.get("/ready")
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] is True
    assert set(body["checks"]) >= {"kafka", "mongodb", "redis", "elasticsearch", "s3", "worker"}
    assert all(state == "ok" for state in body["checks"].values())
    metrics = await http.get("/metrics")
    assert metrics.status_code == 200
    assert "parley_gateway_http_requests_total" in metrics.text
    assert "parley_gateway_connected_sockets" in metrics.text


async def test_correlation_id_header_round_trip(http: httpx.AsyncClient) -> None:
    r = await http.get("/health", headers={"X-Correlation-ID": "e2e-trace-1"})
    assert r.headers["X-Correlation-ID"] == "e2e-trace-1"
    assert len((await http.get("/health")).headers["X-Correlation-ID"]) == 36
