"""Two gateways on one port and two workers: every socket of a user gets its pushes whichever gateway
holds it, and every command's outcome returns to the gateway that asked."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
import pytest
import socketio

from bench.clients import connect, ok, user
from tests.conftest import Platform
from tests.faults.conftest import GATEWAYS, processes

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

_ESTABLISHED = "01"


def _established_to(port: int, pid: int) -> int:
    """How many established connections to local `port` process `pid` holds (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == _ESTABLISHED and fields[9] in inodes:
                count += 1
    return count


async def test_pushes_reach_every_socket_of_a_user_on_every_gateway(cluster: Platform) -> None:
    gateways = {name: pid for name, pid in processes(cluster).items() if name.startswith("gateway")}
    assert len(gateways) == GATEWAYS
    async with httpx.AsyncClient(base_url=cluster.base_url, timeout=30) as http:
        tag = os.urandom(4).hex()
        (alice_id, alice_token), (bob_id, bob_token) = [await user(http, f"s{tag}{n}") for n in ("a", "b")]
    # Bob opens sockets until the kernel has handed some to each gateway.
    received: list[asyncio.Queue[dict[str, object]]] = []
    bob_sockets: list[socketio.AsyncClient] = []
    try:
        for _ in range(40):
            queue: asyncio.Queue[dict[str, object]] = asyncio.Queue()
            client = await connect(cluster.base_url, bob_token)
            client.on("message:new", queue.put_nowait)
            bob_sockets.append(client)
            received.append(queue)
            held = {name: _established_to(cluster.port, pid) for name, pid in gateways.items()}
            if len(bob_sockets) >= 4 and all(held.values()):
                break
        assert all(held.values()), f"the kernel gave every socket to one gateway: {held}"
        alice = await connect(cluster.base_url, alice_token)
        try:
            created = await ok(alice, "conversation:create", {"kind": "direct", "participant_ids": [bob_id]})
            sent = await ok(alice, "message:send", {"conversation_id": created["conversation_id"], "body": "to all"})
        finally:
            await alice.disconnect()
        for queue in received:
            async with asyncio.timeout(15):
                while (pushed := await queue.get())["message_id"] != sent["message_id"]:
                    pass
            assert pushed["body"] == "to all" and pushed["sender_id"] == alice_id
        # Bob's commands from sockets on either gateway are answered on that socket.
        for i, client in enumerate(bob_sockets):
            reply = await ok(client, "message:send", {"conversation_id": created["conversation_id"], "body": f"b{i}"})
            assert reply["seq"] == sent["seq"] + 1 + i
    finally:
        for client in bob_sockets:
            await client.disconnect()


def test_long_polling_is_refused_when_gateways_share_the_port(cluster: Platform) -> None:
    """A Socket.IO session cannot follow the kernel's spreading of polling requests: refused at once."""
    response = httpx.get(f"{cluster.base_url}/socket.io/", params={"EIO": "4", "transport": "polling"}, timeout=10)
    assert response.status_code == 400
