"""Socket connect: only a valid access token of a registered user gets a session."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import pytest
import socketio
from pymongo.errors import ServerSelectionTimeoutError

from api.metrics import GatewayMetrics
from api.services import GatewayServices
from api.socket import connection
from infra.security.tokens import TokenService
from infra.settings import Settings

TOKENS = TokenService("unit-test-jwt-secret-0123456789abcdef", "HS256", 900, 3600)


class FakeManager:
    def is_connected(self, sid: str, namespace: str) -> bool:
        return False


class FakeSio:
    def __init__(self) -> None:
        self.handlers: dict[str, Any] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.manager = FakeManager()

    def on(self, event: str, handler: Any) -> None:
        self.handlers[event] = handler

    async def save_session(self, sid: str, session: dict[str, Any]) -> None:
        self.sessions[sid] = session

    async def enter_room(self, sid: str, room: str) -> None:
        pass


@dataclass
class FakeReadModels:
    users: set[str] = field(default_factory=set)
    down: bool = False

    async def user_exists(self, user_id: str) -> bool:
        if self.down:
            raise ServerSelectionTimeoutError("mongo down")
        return user_id in self.users


@dataclass
class FakeServices:
    read_models: FakeReadModels
    tokens: TokenService = TOKENS
    settings: Settings = field(default_factory=Settings)
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)


def connect_handler(read_models: FakeReadModels) -> tuple[Any, FakeSio]:
    sio = FakeSio()
    connection.register(cast(Any, sio), cast(GatewayServices, FakeServices(read_models)))
    return sio.handlers["connect"], sio


async def test_a_registered_user_connects() -> None:
    connect, sio = connect_handler(FakeReadModels({"alice"}))
    assert await connect("sid-1", {}, {"token": TOKENS.issue("alice", "access")}) is None
    assert sio.sessions["sid-1"] == {"user_id": "alice"}


async def test_a_signed_token_of_an_unknown_user_is_refused() -> None:
    connect, sio = connect_handler(FakeReadModels({"alice"}))
    with pytest.raises(socketio.exceptions.ConnectionRefusedError) as refused:
        await connect("sid-1", {}, {"token": TOKENS.issue("mallory", "access")})
    assert refused.value.error_args["message"] == "unauthorized"
    assert sio.sessions == {}


async def test_when_the_users_read_model_is_down_nobody_is_admitted() -> None:
    connect, sio = connect_handler(FakeReadModels({"alice"}, down=True))
    with pytest.raises(socketio.exceptions.ConnectionRefusedError) as refused:
        await connect("sid-1", {}, {"token": TOKENS.issue("alice", "access")})
    assert refused.value.error_args["message"] == "unavailable"
    assert sio.sessions == {}
