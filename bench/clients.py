"""What every bench's clients do: register and log in over HTTP, connect a socket, call and check an ack."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx
import socketio

PASSWORD = "bench-password-1"
REGISTER_ATTEMPTS = 10


async def user(http: httpx.AsyncClient, name: str, display_name: str | None = None) -> tuple[str, str]:
    """Registers `name` and logs it in: (user_id, access token)."""
    body: dict[str, str] = {"username": name, "password": PASSWORD}
    if display_name is not None:
        body["display_name"] = display_name
    unanswered = False
    for attempt in range(REGISTER_ATTEMPTS):
        # 503: the command was not answered in time (a worker still joining its group right after
        # start). It may still have been decided, so a retry can find the name taken by itself.
        r = await http.post("/auth/register", json=body)
        if r.status_code != 503 or attempt == REGISTER_ATTEMPTS - 1:
            break
        unanswered = True
        await asyncio.sleep(0.5 * (attempt + 1))
    if not (unanswered and r.status_code == 409):
        r.raise_for_status()
    registered = r
    for attempt in range(REGISTER_ATTEMPTS):
        r = await http.post("/auth/login", json={"username": name, "password": PASSWORD})
        # After an unanswered registration nothing waited for the users view to show the new user.
        if r.status_code != 401 or not unanswered or attempt == REGISTER_ATTEMPTS - 1:
            break
        await asyncio.sleep(0.5 * (attempt + 1))
    r.raise_for_status()
    token = str(r.json()["access_token"])
    user_id = str(registered.json()["user_id"]) if registered.status_code == 201 else _subject(token)
    return user_id, str(r.json()["access_token"])


def _subject(token: str) -> str:
    """The user id an access token names (its `sub` claim; read, not verified)."""
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims["sub"])


async def connect(url: str, token: str) -> socketio.AsyncClient:
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(url, auth={"token": token}, socketio_path="socket.io", transports=["websocket"])
    return client


async def ok(client: socketio.AsyncClient, event: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The ack's data; RuntimeError if the ack is not ok."""
    ack = await client.call(event, payload, timeout=30)
    if not isinstance(ack, dict) or not ack.get("ok"):
        raise RuntimeError(f"{event} failed: {ack}")
    data: dict[str, Any] = ack["data"]
    return data


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by rank, of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
