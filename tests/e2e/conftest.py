"""Helpers for end-to-end tests: users that register and log in over HTTP, socket clients that
connect with their token, and an inbox of the pushes each client receives."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import socketio

from tests.conftest import REPO_ROOT, Platform

PASSWORD = "correct horse battery staple"
ACK_TIMEOUT_S = 15


def unique_name(prefix: str = "u") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def parley(platform: Platform, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI against the session's platform, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "api.cli.main", *args, "--data-dir", str(platform.data_dir)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@dataclass
class Inbox:
    """Every push a client received, in order."""

    events: list[tuple[str, Any]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, event: str, data: Any) -> None:
        self.events.append((event, data))
        self._changed.set()

    def of(self, event: str) -> list[Any]:
        return [data for name, data in self.events if name == event]

    async def wait_for(self, event: str, where: Callable[[Any], bool] = lambda _: True, within_s: float = 10.0) -> Any:
        async with asyncio.timeout(within_s):
            while True:
                for data in self.of(event):
                    if where(data):
                        return data
                self._changed.clear()
                await self._changed.wait()


@dataclass
class Session:
    """A registered, logged-in user; ``socket`` once connected."""

    user_id: str
    username: str
    access_token: str
    refresh_token: str
    socket: socketio.AsyncClient | None = None
    inbox: Inbox = field(default_factory=Inbox)

    async def call(self, event: str, data: Any = None) -> dict[str, Any]:
        assert self.socket is not None, "connect first"
        ack = await self.socket.call(event, data, timeout=ACK_TIMEOUT_S)
        assert isinstance(ack, dict), f"ack of {event} is not a dict: {ack!r}"
        return ack

    async def ok(self, event: str, data: Any = None) -> dict[str, Any]:
        """The ack's data, asserting it succeeded."""
        ack = await self.call(event, data)
        assert ack["ok"] is True, f"{event} {data!r} -> {ack!r}"
        result: dict[str, Any] = ack["data"]
        return result

    async def error(self, event: str, data: Any = None) -> str:
        """The ack's error code, asserting it failed."""
        ack = await self.call(event, data)
        assert ack["ok"] is False, f"{event} {data!r} unexpectedly succeeded: {ack!r}"
        code: str = ack["error"]["code"]
        return code


async def register(http: httpx.AsyncClient, username: str, password: str = PASSWORD, **extra: Any) -> httpx.Response:
    return await http.post("/auth/register", json={"username": username, "password": password, **extra})


async def login(http: httpx.AsyncClient, username: str, password: str = PASSWORD) -> httpx.Response:
    return await http.post("/auth/login", json={"username": username, "password": password})


async def connect(base_url: str, token: str | None, inbox: Inbox | None = None) -> socketio.AsyncClient:
    client = socketio.AsyncClient(reconnection=False)
    if inbox is not None:
        client.on("*", inbox.add)
    await client.connect(
        base_url,
        auth={"token": token} if token is not None else None,
        socketio_path="socket.io",
        transports=["websocket"],
        wait_timeout=10,
    )
    return client


class Users:
    """Makes sessions and disconnects them when the test ends."""

    def __init__(self, base_url: str, http: httpx.AsyncClient) -> None:
        self.base_url = base_url
        self.http = http
        self._sockets: list[socketio.AsyncClient] = []

    async def new(self, connected: bool = True, display_name: str | None = None) -> Session:
        name = unique_name()
        extra = {"display_name": display_name} if display_name else {}
        registered = await register(self.http, name, **extra)
        assert registered.status_code == 201, registered.text
        tokens = await login(self.http, name)
        assert tokens.status_code == 200, tokens.text
        body = tokens.json()
        session = Session(registered.json()["user_id"], name, body["access_token"], body["refresh_token"])
        if connected:
            await self.connect(session)
        return session

    async def connect(self, session: Session) -> socketio.AsyncClient:
        session.socket = await connect(self.base_url, session.access_token, session.inbox)
        self._sockets.append(session.socket)
        return session.socket

    async def close(self) -> None:
        for client in self._sockets:
            if client.connected:
                await client.disconnect()


@pytest.fixture
def base_url(platform: Platform) -> str:
    return platform.base_url


@pytest.fixture
async def http(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        yield client


@pytest.fixture
async def users(base_url: str, http: httpx.AsyncClient) -> AsyncIterator[Users]:
    made = Users(base_url, http)
    try:
        yield made
    finally:
        await made.close()
