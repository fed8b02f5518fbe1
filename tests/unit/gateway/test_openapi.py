"""/docs tells the truth: the OpenAPI document against the routes' real behaviour, Swagger UI served
from this process, and /ready's reasons in words."""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st

from api import services as services_module
from api.http.app import create_app
from api.services import NotReady, _bounded
from domain.errors import DomainError
from domain.names import USERNAME_MAX, USERNAME_MIN, normalise_username
from infra.kafka.command_bus import Unavailable
from tests.unit.gateway.test_http_app import UNREACHABLE


def http_app() -> FastAPI:
    app = create_app(UNREACHABLE)
    http = getattr(app, "other_asgi_app", None)  # socketio.ASGIApp wraps the FastAPI app
    assert isinstance(http, FastAPI)
    return http


@functools.cache
def openapi() -> dict[str, Any]:
    return http_app().openapi()


@pytest.fixture
def schema() -> dict[str, Any]:
    return openapi()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(UNREACHABLE))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as c:
        yield c


def responses(schema: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    out: dict[str, Any] = schema["paths"][path][method]["responses"]
    return out


def test_register_states_the_domains_username_rule(schema: dict[str, Any]) -> None:
    username = schema["components"]["schemas"]["RegisterRequest"]["properties"]["username"]
    assert (username["minLength"], username["maxLength"]) == (USERNAME_MIN, USERNAME_MAX) == (3, 32)
    assert username["pattern"] and "NFKC" in username["description"]
    display_name = schema["components"]["schemas"]["RegisterRequest"]["properties"]["display_name"]
    assert display_name["anyOf"][0]["maxLength"] == 64


@given(st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=40))
def test_every_valid_username_matches_the_documented_pattern(raw: str) -> None:
    pattern = openapi()["components"]["schemas"]["RegisterRequest"]["properties"]["username"]["pattern"]
    try:
        name = normalise_username(raw)
    except DomainError:
        return
    assert re.fullmatch(pattern, name) and USERNAME_MIN <= len(name) <= USERNAME_MAX


def test_every_status_a_route_answers_is_documented(schema: dict[str, Any]) -> None:
    assert set(responses(schema, "post", "/auth/register")) == {"201", "409", "422", "429", "503"}
    for path in ("/auth/login", "/auth/refresh"):
        assert set(responses(schema, "post", path)) == {"200", "401", "422", "429", "503"}
    assert set(responses(schema, "get", "/ready")) == {"200", "503"}
    for path in ("/auth/register", "/auth/login", "/auth/refresh"):
        too_many = responses(schema, "post", path)["429"]
        assert too_many["headers"]["Retry-After"]["schema"]["type"] == "integer"
        failure = responses(schema, "post", path)["422"]["content"]["application/json"]["schema"]["$ref"]
        assert "input" not in schema["components"]["schemas"][failure.rsplit("/", 1)[1]]["properties"]


def test_metrics_are_documented_as_text(schema: dict[str, Any]) -> None:
    content = responses(schema, "get", "/metrics")["200"]["content"]
    assert list(content) and all(media.startswith("text/plain") for media in content)


def test_the_description_points_at_socketio_and_the_protocol(schema: dict[str, Any]) -> None:
    description = schema["info"]["description"]
    assert "Socket.IO" in description and "/socket.io" in description
    assert "docs/PROTOCOL.md" in description and "(/docs/protocol)" in description


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_docs_pages_load_nothing_from_elsewhere(client: httpx.AsyncClient, page: str) -> None:
    r = await client.get(page)
    assert r.status_code == 200
    assert "http://" not in r.text and "https://" not in r.text and "//cdn" not in r.text
    parser = _Assets()
    parser.feed(r.text)
    assert len(parser.urls) >= 2
    for url in parser.urls:
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 1000, url
    assert (await client.get("/openapi.json")).status_code == 200


async def test_the_protocol_is_served(client: httpx.AsyncClient) -> None:
    r = await client.get("/docs/protocol")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/markdown")
    assert r.text.startswith("# Parley client protocol")


async def test_readiness_reasons_are_words(monkeypatch: pytest.MonkeyPatch) -> None:
    async def refused() -> None:
        raise ConnectionError("Error 111 connecting to 127.0.0.1:1. Connect call failed ('127.0.0.1', 1).")

    async def odd() -> None:
        raise LookupError("weird")

    async def not_ready() -> None:
        raise NotReady("no worker has reported in the last 15 s")

    async def unavailable() -> None:
        raise Unavailable("command bus is not started")

    async def slow() -> None:
        await asyncio.sleep(10)

    assert await _bounded("redis", refused) == "Redis cannot be reached: the connection was refused"
    assert "LookupError" not in await _bounded("s3", odd)
    assert await _bounded("worker", not_ready) == "no worker has reported in the last 15 s"
    assert await _bounded("kafka", unavailable) == "Kafka: command bus is not started"
    monkeypatch.setattr(services_module, "READY_CHECK_TIMEOUT_S", 0.01)
    assert await _bounded("mongodb", slow) == "MongoDB did not answer within 0.01 s"


async def test_ready_names_no_exception_class_when_everything_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services_module, "READY_CHECK_TIMEOUT_S", 0.5)
    transport = httpx.ASGITransport(app=create_app(UNREACHABLE))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as c:
        r = await c.get("/ready")
    assert r.status_code == 503
    checks = r.json()["checks"]
    assert set(checks) == {"kafka", "mongodb", "redis", "elasticsearch", "s3", "worker"}
    for reason in checks.values():
        assert reason != "ok" and not re.search(r"[A-Z][a-z]+(Error|Exception)\b", reason), reason
