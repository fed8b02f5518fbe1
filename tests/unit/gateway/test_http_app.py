"""The HTTP side of the gateway app, without servers: routing, correlation ids, validation, metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from api.http.app import create_app
from infra.settings import Settings

UNREACHABLE = Settings(
    kafka_bootstrap="127.0.0.1:1",
    mongo_url="mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=100",
    redis_url="redis://127.0.0.1:1/0",
    elasticsearch_url="http://127.0.0.1:1",
    s3_endpoint="127.0.0.1:1",
    s3_secret_key="unit-test-secret-key",
    jwt_secret="unit-test-jwt-secret-0123456789abcdef",
    master_key="dW5pdC10ZXN0LW1hc3Rlci1rZXktMzItYnl0ZXMhISE",
)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    # No lifespan: nothing is started, so only what needs no server can answer.
    transport = httpx.ASGITransport(app=create_app(UNREACHABLE))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as c:
        yield c


async def test_health(client: httpx.AsyncClient) -> None:
    r = await client.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


async def test_a_valid_correlation_id_is_echoed(client: httpx.AsyncClient) -> None:
    r = await client.get("/health", headers={"X-Correlation-ID": "trace.1:a-b_c"})
    assert r.headers["x-correlation-id"] == "trace.1:a-b_c"


@pytest.mark.parametrize("supplied", [None, "has space", "x" * 129, "a/b"])
async def test_otherwise_a_fresh_one_is_made(client: httpx.AsyncClient, supplied: str | None) -> None:
    headers = {"X-Correlation-ID": supplied} if supplied is not None else {}
    r = await client.get("/health", headers=headers)
    made = r.headers["x-correlation-id"]
    assert made and made != supplied and len(made) == 36


@pytest.mark.parametrize(
    "body",
    [
        {"username": "alice", "password": "short"},
        {"username": "alice", "password": "x" * 257},
        {"username": "a", "password": "password123"},
        {"username": "has space", "password": "password123"},
        {"username": "x" * 300, "password": "password123"},
        {"username": 5, "password": "password123"},
        {"password": "password123"},
        {"username": "alice", "password": "password123", "display_name": "   "},
    ],
)
async def test_register_validation_is_422(client: httpx.AsyncClient, body: dict[str, object]) -> None:
    r = await client.post("/auth/register", json=body)
    assert r.status_code == 422
    assert isinstance(r.json()["detail"], list)


async def test_refresh_with_a_garbage_token_is_401(client: httpx.AsyncClient) -> None:
    r = await client.post("/auth/refresh", json={"refresh_token": "garbage"})
    assert r.status_code == 401


async def test_metrics_are_prometheus_text_of_this_app_only(client: httpx.AsyncClient) -> None:
    await client.get("/health")
    r = await client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert 'parley_gateway_http_requests_total{method="GET",route="/health",status="200"} 1.0' in r.text
    assert "parley_gateway_connected_sockets 0.0" in r.text
    assert "process_resident_memory_bytes" in r.text  # the process' own series, in this app's registry


async def test_two_apps_have_separate_registries() -> None:
    first, second = create_app(UNREACHABLE), create_app(UNREACHABLE)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=first), base_url="http://a") as a:
        await a.get("/health")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=second), base_url="http://b") as b:
        text = (await b.get("/metrics")).text
    assert 'route="/health"' not in text


async def test_socketio_path_is_served_by_engineio(client: httpx.AsyncClient) -> None:
    r = await client.get("/socket.io/", params={"EIO": "4", "transport": "polling"})
    assert r.status_code == 200
    assert r.text.startswith("0{") and '"sid"' in r.text  # an Engine.IO open packet
