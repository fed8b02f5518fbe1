"""What every bench's clients do: register and log in over HTTP, connect a socket, call and check an ack."""

from __future__ import annotations

from typing import Any

import httpx
import socketio

PASSWORD = "bench-password-1"


async def user(http: httpx.AsyncClient, name: str, display_name: str | None = None) -> tuple[str, str]:
    """Registers `name` and logs it in: (user_id, access token)."""
    body: dict[str, str] = {"username": name, "password": PASSWORD}
    if display_name is not None:
        body["display_name"] = display_name
    r = await http.post("/auth/register", json=body)
    r.raise_for_status()
    user_id = str(r.json()["user_id"])
    r = await http.post("/auth/login", json={"username": name, "password": PASSWORD})
    r.raise_for_status()
    return user_id, str(r.json()["access_token"])


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
