"""HTTP rate limits and 422 bodies, without servers (the limiter is the in-memory fake; a call the
limiter lets through fails later on the unreachable servers, which is not what is asserted)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from api import bootstrap
from api.http.app import create_app
from api.services import GatewayServices
from infra.rate_limit import InMemoryRateLimiter
from infra.settings import RateLimit, RateLimits
from tests.unit.gateway.test_http_app import UNREACHABLE

LIMITS = RateLimits(
    login_address=RateLimit(limit=3, period_s=60),
    login_username=RateLimit(limit=2, period_s=60),
    register_address=RateLimit(limit=2, period_s=60),
    refresh_address=RateLimit(limit=2, period_s=60),
)

ClientAt = Callable[[str], httpx.AsyncClient]


@pytest.fixture
async def services() -> AsyncIterator[GatewayServices]:
    made = bootstrap.gateway(UNREACHABLE.model_copy(update={"rate_limits": LIMITS, "query_timeout_s": 0.2}))
    made.rate_limiter = InMemoryRateLimiter()
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture
def client_at(services: GatewayServices) -> ClientAt:
    app = create_app(services.settings, services)

    def make(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://gateway")

    return make


async def test_register_over_the_limit_of_an_address_is_429_with_retry_after(client_at: ClientAt) -> None:
    async with client_at("10.0.0.1") as one, client_at("10.0.0.2") as two:
        body = {"username": "alice", "password": "short"}  # refused bodies count too
        assert [(await one.post("/auth/register", json=body)).status_code for _ in range(2)] == [422, 422]
        limited = await one.post("/auth/register", json=body)
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["Retry-After"]) <= 30
        assert (await two.post("/auth/register", json=body)).status_code == 422
        metrics = (await one.get("/metrics")).text
    assert 'parley_gateway_rate_limited_total{operation="register_address"} 1.0' in metrics


async def test_login_is_limited_per_username_whatever_the_address(client_at: ClientAt) -> None:
    statuses = []
    for i, spelling in enumerate(["Alice", "alice", "ALICE", "alice"]):
        async with client_at(f"10.0.1.{i}") as c:
            r = await c.post("/auth/login", json={"username": spelling, "password": "wrong-password"})
            statuses.append(r.status_code)
            if r.status_code == 429:
                assert int(r.headers["Retry-After"]) >= 1
    assert statuses[2:] == [429, 429]  # the first two reached the (unreachable) read model
    async with client_at("10.0.1.9") as c:
        other = await c.post("/auth/login", json={"username": "bob", "password": "wrong-password"})
    assert other.status_code != 429


async def test_login_is_limited_per_address(client_at: ClientAt) -> None:
    async with client_at("10.0.2.1") as c:
        statuses = [
            (await c.post("/auth/login", json={"username": f"user{i}", "password": "x"})).status_code for i in range(4)
        ]
    assert statuses[3] == 429 and 429 not in statuses[:3]


async def test_refresh_is_limited_per_address(client_at: ClientAt) -> None:
    async with client_at("10.0.3.1") as c:
        statuses = [(await c.post("/auth/refresh", json={"refresh_token": "garbage"})).status_code for _ in range(3)]
    assert statuses == [401, 401, 429]


@pytest.mark.parametrize(
    ("path", "body", "secret"),
    [
        ("/auth/register", {"username": "alice", "password": "sh0rt!"}, "sh0rt!"),
        ("/auth/register", {"username": "alice", "password": "s3cr3t-" * 40}, "s3cr3t-"),
        ("/auth/register", {"username": "a", "password": "hunter2-hunter2"}, "hunter2"),
        ("/auth/login", {"username": "alice", "password": ""}, '"password":""'),
        ("/auth/login", {"username": "alice", "password": 12345678}, "12345678"),
        ("/auth/login", {"username": "", "password": "hunter2-hunter2"}, "hunter2"),
        ("/auth/refresh", {"refresh_token": ["tok-en-secret"]}, "tok-en-secret"),
    ],
)
async def test_a_422_never_echoes_the_rejected_values(
    client_at: ClientAt, path: str, body: dict[str, object], secret: str
) -> None:
    async with client_at("10.0.4.1") as c:
        r = await c.post(path, json=body)
    assert r.status_code == 422
    assert secret not in r.text
    details = r.json()["detail"]
    assert details and all("input" not in d and d["loc"] and d["msg"] for d in details)
