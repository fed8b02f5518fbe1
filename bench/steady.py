"""A steady load of message sends that survives faults: what a careful client does.

Each sender is one user with one socket in one conversation. It sends a message, waits for the
ack, then sends the next after ``interval_s``. When it gets no ack (a timeout, a dropped socket)
or a transient refusal (``unavailable``, ``rate_limited``), it reconnects if it must and sends the
*same* command again, with the same ``command_id``, until the command is acked or its deadline
passes. So every command is acked at most once as far as the client knows, and the platform must
make the retries harmless (docs/PROTOCOL.md, "Idempotency").

Used by the fault-injection tests (tests/faults) and by the scale-out bench (bench/scale.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import socketio
import socketio.exceptions

TRANSIENT = frozenset({"unavailable", "rate_limited"})  # codes a client retries with the same command_id
CALL_TIMEOUT_S = 12.0  # a little over the gateway's command timeout (PARLEY_COMMAND_TIMEOUT_S, 10 s)
CONNECT_TIMEOUT_S = 5.0
COMMAND_DEADLINE_S = 180.0  # a command not acked by then is given up (and counted)

now = time.monotonic


@dataclass(frozen=True)
class Acked:
    """A command the platform acked ok, as the client saw it."""

    command_id: str
    user_id: str  # the sender: a command is its sender's (the same id from another user is another command)
    conversation_id: str
    body: str
    message_id: str
    seq: int
    first_sent: float  # monotonic time of the first attempt
    acked: float  # monotonic time of the ok ack
    attempts: int


@dataclass
class SenderSpec:
    user_id: str
    token: str
    conversation_id: str


@dataclass
class LoadReport:
    acked: list[Acked] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)  # final refusals (not transient) by code
    transient: Counter[str] = field(default_factory=Counter)  # retried: codes, "timeout", "disconnected"
    given_up: list[str] = field(default_factory=list)  # command ids never acked within the deadline
    reconnects: int = 0

    def acked_since(self, t: float) -> list[Acked]:
        return [a for a in self.acked if a.acked >= t]


class Sender:
    def __init__(self, url: str, spec: SenderSpec, report: LoadReport, index: int) -> None:
        self.url = url
        self.spec = spec
        self.report = report
        self.index = index
        self._socket: socketio.AsyncClient | None = None
        self._dropped = asyncio.Event()  # the current socket disconnected

    async def _connected(self) -> socketio.AsyncClient:
        if self._socket is not None and self._socket.connected:
            return self._socket
        if self._socket is not None:
            self.report.reconnects += 1
            with contextlib.suppress(Exception):
                await self._socket.disconnect()
        client = socketio.AsyncClient(reconnection=False)
        self._socket = client
        dropped = self._dropped = asyncio.Event()
        client.on("disconnect", lambda *_: dropped.set())
        await client.connect(
            self.url,
            auth={"token": self.spec.token},
            socketio_path="socket.io",
            transports=["websocket"],
            wait_timeout=CONNECT_TIMEOUT_S,
        )
        return client

    async def send_one(self, k: int) -> None:
        """One command, retried with its command id until acked, refused for good, or given up."""
        command_id = str(uuid.uuid4())
        body = f"steady {self.index}-{k} {command_id[:8]}"
        payload = {"conversation_id": self.spec.conversation_id, "body": body, "command_id": command_id}
        first = now()
        attempts = 0
        backoff = 0.1
        while now() - first < COMMAND_DEADLINE_S:
            attempts += 1
            try:
                client = await self._connected()
                ack: Any = await self._call(client, payload)
            except socketio.exceptions.TimeoutError:
                self.report.transient["timeout"] += 1
            except (socketio.exceptions.SocketIOError, OSError):
                self.report.transient["disconnected"] += 1
            else:
                if isinstance(ack, dict) and ack.get("ok") is True:
                    data = ack["data"]
                    self.report.acked.append(
                        Acked(
                            command_id,
                            self.spec.user_id,
                            self.spec.conversation_id,
                            body,
                            str(data["message_id"]),
                            int(data["seq"]),
                            first,
                            now(),
                            attempts,
                        )
                    )
                    return
                code = str(ack.get("error", {}).get("code")) if isinstance(ack, dict) else f"bad ack {ack!r}"
                if code not in TRANSIENT:
                    self.report.errors[code] += 1
                    return
                self.report.transient[code] += 1
            await asyncio.sleep(backoff)
            backoff = min(2.0, backoff * 2)
        self.report.given_up.append(command_id)

    async def _call(self, client: socketio.AsyncClient, payload: dict[str, Any]) -> Any:
        """The ack; a socket that drops meanwhile raises at once (its ack will never come)."""
        call = asyncio.ensure_future(client.call("message:send", payload, timeout=CALL_TIMEOUT_S))
        dropped = asyncio.ensure_future(self._dropped.wait())
        try:
            await asyncio.wait({call, dropped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            dropped.cancel()
        if not call.done():
            call.cancel()
            raise socketio.exceptions.DisconnectedError("the socket dropped before the ack")
        return call.result()

    async def run(self, stop: asyncio.Event, interval_s: float) -> None:
        k = 0
        while not stop.is_set():
            await self.send_one(k)  # the command in flight is finished even after stop is set
            k += 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval_s):
                    await stop.wait()

    async def close(self) -> None:
        if self._socket is not None and self._socket.connected:
            with contextlib.suppress(Exception):
                await self._socket.disconnect()


class SteadyLoad:
    """Senders running until ``stop()``; ``report`` fills as acks arrive."""

    def __init__(self, url: str, specs: Sequence[SenderSpec], interval_s: float = 0.05) -> None:
        self.report = LoadReport()
        self.senders = [Sender(url, spec, self.report, i) for i, spec in enumerate(specs)]
        self.interval_s = interval_s
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(s.run(self._stop, self.interval_s)) for s in self.senders]

    async def stop(self) -> LoadReport:
        """Stop sending; returns once every command in flight is acked, refused or given up."""
        self._stop.set()
        await asyncio.gather(*self._tasks)
        for sender in self.senders:
            await sender.close()
        return self.report

    async def until_acked(self, count: int, after: float, within_s: float) -> float:
        """Waits until `count` commands were acked after time `after`; the time of the last one."""
        deadline = now() + within_s
        while True:
            recent = self.report.acked_since(after)
            if len(recent) >= count:
                return sorted(a.acked for a in recent)[count - 1]
            if now() > deadline:
                raise TimeoutError(f"only {len(recent)} of {count} acks within {within_s:.0f} s")
            await asyncio.sleep(0.1)
