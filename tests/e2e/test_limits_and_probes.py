"""Rate limits and the black-box probe's findings, against the running platform (default limits,
except the per-address auth limits that tests/conftest.py raises for a session on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import sys
import uuid

import httpx
import pytest
import socketio

from infra.security.tokens import TokenService
from infra.settings import RateLimits
from tests.conftest import Platform
from tests.e2e.conftest import PASSWORD, Users, connect, login, register, unique_name

pytestmark = pytest.mark.e2e


def forger(platform: Platform) -> TokenService:
    s = platform.settings
    return TokenService(s.jwt_secret, s.jwt_algorithm, s.access_token_ttl_s, s.refresh_token_ttl_s)


async def test_thirty_wrong_passwords_for_one_user_hit_the_limit_whatever_the_address(
    http: httpx.AsyncClient,
) -> None:
    name = unique_name()
    assert (await register(http, name)).status_code == 201
    statuses: list[int] = []
    for attempt in range(30):
        # A different client address each time (the gateway trusts X-Forwarded-For from 127.0.0.1).
        r = await http.post(
            "/auth/login",
            json={"username": name, "password": f"wrong-{attempt}"},
            headers={"X-Forwarded-For": f"198.51.100.{attempt}"},
        )
        statuses.append(r.status_code)
        if r.status_code == 429:
            assert 1 <= int(r.headers["Retry-After"]) <= 900
    assert set(statuses) == {401, 429}, statuses
    assert statuses.index(429) <= RateLimits().login_username.limit
    # While limited, even the right password is refused: the attacker learns nothing.
    assert (await login(http, name.upper())).status_code == 429
    metrics = (await http.get("/metrics")).text
    assert 'parley_gateway_rate_limited_total{operation="login_username"}' in metrics


async def test_socket_events_over_the_limit_get_rate_limited_with_retry_after(users: Users) -> None:
    me = await users.new()
    limit = RateLimits().typing
    acks = [await me.call("typing", {"conversation_id": str(uuid.uuid4()), "on": True}) for _ in range(limit.limit + 5)]
    codes = [a["error"]["code"] for a in acks]
    assert codes[: limit.limit] == ["not_found"] * limit.limit  # the handler ran for those
    limited = [a["error"] for a in acks if a["error"]["code"] == "rate_limited"]
    assert limited, codes[limit.limit :]
    assert all(0 < e["retry_after"] <= limit.period_s / limit.limit + 0.01 for e in limited)
    # Other classes of event are counted apart.
    assert (await me.call("conversation:list", {}))["ok"] is True


async def test_a_signed_token_of_a_user_who_does_not_exist_is_refused(platform: Platform, users: Users) -> None:
    tokens = forger(platform)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await connect(platform.base_url, tokens.issue_pair(str(uuid.uuid4())).access_token)
    # The same forger's token for a real user is accepted: the refusal is about the user.
    real = await users.new(connected=False)
    client = await connect(platform.base_url, tokens.issue_pair(real.user_id).access_token)
    try:
        assert client.connected
    finally:
        await client.disconnect()


@pytest.mark.parametrize(
    ("path", "body", "secret"),
    [
        ("/auth/register", {"username": "probe-user", "password": "sh0rt!"}, "sh0rt!"),
        ("/auth/register", {"username": "x", "password": "hunter2-hunter2"}, "hunter2"),
        ("/auth/login", {"username": "probe-user", "password": "p" * 300}, "p" * 300),
        ("/auth/login", {"username": "", "password": "hunter2-hunter2"}, "hunter2"),
    ],
)
async def test_a_422_never_echoes_a_password(
    http: httpx.AsyncClient, path: str, body: dict[str, str], secret: str
) -> None:
    r = await http.post(path, json=body)
    assert r.status_code == 422
    assert secret not in r.text
    assert all("input" not in d for d in r.json()["detail"])


async def test_deep_nesting_gets_an_invalid_ack_and_the_socket_stays(users: Users) -> None:
    me = await users.new()
    for depth in (40, 1000):
        payload: object = {}
        for _ in range(depth):
            payload = [payload]
        old = sys.getrecursionlimit()
        sys.setrecursionlimit(10_000)  # the client's own encoder recurses too
        try:
            ack = await me.call("message:send", payload)
        finally:
            sys.setrecursionlimit(old)
        assert ack["ok"] is False and ack["error"]["code"] == "invalid", ack
        assert "nested" in ack["error"]["message"]
    assert me.socket is not None and me.socket.connected
    assert (await me.call("conversation:list", {}))["ok"] is True


async def test_a_frame_within_the_limit_is_acked_and_a_larger_one_closes_the_socket(
    platform: Platform, users: Users
) -> None:
    me = await users.new()
    other = await users.new(connected=False)
    created = await me.ok("conversation:create", {"kind": "direct", "participant_ids": [other.user_id]})
    # ~1 MB: under the 1 MiB frame limit, so it is read and refused by validation (body <= 10,000).
    ack = await me.call("message:send", {"conversation_id": created["conversation_id"], "body": "x" * 1_000_000})
    assert ack["ok"] is False and ack["error"]["code"] == "invalid"
    assert me.socket is not None and me.socket.connected
    # Over the limit: the frame is never read, the connection is closed (documented; no ack possible).
    too_big = platform.settings.socket_max_frame_bytes + 1024
    await me.socket.emit("message:send", {"conversation_id": created["conversation_id"], "body": "x" * too_big})
    await asyncio.wait_for(me.socket.wait(), 10)
    assert not me.socket.connected
    # Reconnecting works: nothing else was harmed.
    again = await connect(platform.base_url, me.access_token)
    try:
        assert again.connected
    finally:
        await again.disconnect()


async def test_register_and_refresh_answer_as_usual_under_the_limits(http: httpx.AsyncClient) -> None:
    name = unique_name()
    assert (await register(http, name)).status_code == 201
    tokens = (await login(http, name, PASSWORD)).json()
    r = await http.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 200
