"""The client side: pairs of socket.io clients and the closed-loop and open-loop drivers.

The same code drives the platform and the bare echo server; only how a pair is set up differs
(registered users and a real direct conversation, or bare names). One process, one clock
(``time.perf_counter``): push latency is the partner's receive time minus the send time.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import os
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import socketio
import socketio.exceptions

PASSWORD = "bench-load-password-1"
CONNECT_TIMEOUT_S = 20.0
SETUP_ACK_TIMEOUT_S = 30.0
REGISTER_ATTEMPTS = 20
FILLER = "the quick brown fox jumps over the lazy dog"

now = time.perf_counter
CPU_SAMPLE_EVERY_S = 1.0  # how finely a long run's first and last 10% are bracketed


def machine_busy_s(stat: Path = Path("/proc/stat")) -> float | None:
    """Core-seconds the whole machine has spent busy since boot (Linux), None where unknown.

    Every process counts (servers, workers, gateways and these clients alike): over a saturating
    phase, busy core-seconds per acked message is what a message costs the machine."""
    try:
        ticks = [int(x) for x in stat.read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    if len(ticks) < 8:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, _steal = ticks  # steal: the hypervisor's, not ours
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int, proc: Path = Path("/proc")) -> float | None:
    """CPU seconds (user + system, all threads) process ``pid`` has used (Linux), None if unknown."""
    try:
        # Fields after the command name (which may hold spaces): state is the 3rd, utime the 14th.
        fields = (proc / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


@dataclass(frozen=True)
class CpuSnapshot:
    machine: float | None
    processes: dict[str, float]

    @classmethod
    def take(cls, processes: Mapping[str, int]) -> CpuSnapshot:
        found = {name: process_cpu_s(pid) for name, pid in processes.items()}
        return cls(machine_busy_s(), {name: s for name, s in found.items() if s is not None})

    def figures(self, later: CpuSnapshot, acked: int, seconds: float) -> dict[str, Any]:
        """Busy cores, and CPU ms per acked message for the machine and each named process."""
        if not acked or seconds <= 0:
            return {}
        out: dict[str, Any] = {}
        if self.machine is not None and later.machine is not None:
            busy = later.machine - self.machine
            out["busy_cores"] = round(busy / seconds, 2)
            out["cpu_ms_per_ack"] = round(busy * 1000 / acked, 2)
        by_process = {
            name: round((later.processes[name] - before) * 1000 / acked, 2)
            for name, before in self.processes.items()
            if name in later.processes
        }
        if by_process:
            out["cpu_ms_per_ack_by_process"] = dict(sorted(by_process.items(), key=lambda kv: -kv[1]))
        return out


class SetupError(Exception):
    """Users, sockets or conversations could not be set up (printed as one line)."""


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


@dataclass
class Tracker:
    """What one phase sent, what was acked and pushed, and when (perf_counter seconds)."""

    sent_at: dict[str, float] = field(default_factory=dict)  # body -> send time
    acked_bodies: set[str] = field(default_factory=set)
    acks: list[tuple[float, float]] = field(default_factory=list)  # (ack time, latency s), ok acks only
    pushes: list[tuple[float, float]] = field(default_factory=list)  # (receive time, latency s)
    pushed_bodies: set[str] = field(default_factory=set)
    errors: Counter[str] = field(default_factory=Counter)
    duplicate_pushes: int = 0
    foreign_pushes: int = 0  # message:new for a body this phase did not send
    unpushed: int = 0  # acked, not pushed yet
    _all_pushed: asyncio.Event = field(default_factory=asyncio.Event)

    def on_push(self, data: Any) -> None:
        t = now()
        body = data.get("body") if isinstance(data, dict) else None
        sent = self.sent_at.get(body) if isinstance(body, str) else None
        if sent is None or not isinstance(body, str):
            self.foreign_pushes += 1
            return
        if body in self.pushed_bodies:
            self.duplicate_pushes += 1
            return
        self.pushed_bodies.add(body)
        self.pushes.append((t, t - sent))
        if body in self.acked_bodies:
            self.unpushed -= 1
            if self.unpushed == 0:
                self._all_pushed.set()

    def on_ack(self, body: str, t: float) -> None:
        self.acked_bodies.add(body)
        self.acks.append((t, t - self.sent_at[body]))
        if body not in self.pushed_bodies:
            self.unpushed += 1

    async def drain(self, timeout_s: float) -> None:
        """Until every acked message was pushed to its partner, or the timeout."""
        try:
            async with asyncio.timeout(timeout_s):
                while self.unpushed > 0:
                    self._all_pushed.clear()
                    await self._all_pushed.wait()
        except TimeoutError:
            pass

    def summary(self, start: float, seconds: float, whole: bool = False) -> dict[str, Any]:
        """Figures for a window of `seconds` from `start`: throughput counts what arrived within it.

        With `whole` (the open loop), every ack and push counts, over the time from `start` to the
        last of them (at least `seconds`): a backlog stretches that time rather than being dropped."""
        end = start + seconds
        if whole:
            acked_in, pushed_in = len(self.acks), len(self.pushes)
            last = max([t for t, _ in self.acks] + [t for t, _ in self.pushes], default=end)
            seconds = max(seconds, last - start)
        else:
            acked_in = sum(1 for t, _ in self.acks if t <= end)
            pushed_in = sum(1 for t, _ in self.pushes if t <= end)
        ack_ms = [lat * 1000 for _, lat in self.acks]
        push_ms = [lat * 1000 for _, lat in self.pushes]
        return {
            "seconds": round(seconds, 2),
            "sent": len(self.sent_at),
            "acked": len(self.acks),
            "pushed": len(self.pushes),
            "acked_per_s": round(acked_in / seconds, 1) if seconds > 0 else None,
            "pushed_per_s": round(pushed_in / seconds, 1) if seconds > 0 else None,
            "ack_ms": {"p50": _round(percentile(ack_ms, 0.5)), "p99": _round(percentile(ack_ms, 0.99))},
            "push_ms": {"p50": _round(percentile(push_ms, 0.5)), "p99": _round(percentile(push_ms, 0.99))},
            "errors": dict(sorted(self.errors.items())),
            "not_pushed": self.unpushed,
            "duplicate_pushes": self.duplicate_pushes,
        }


@dataclass
class Pair:
    index: int
    sender: socketio.AsyncClient
    receiver: socketio.AsyncClient
    conversation_id: str


class Fleet:
    """N pairs of connected clients; each receiver's `message:new` goes to the current tracker."""

    def __init__(self, url: str, ack_timeout_s: float) -> None:
        self.url = url
        self.ack_timeout_s = ack_timeout_s
        self.tag = uuid.uuid4().hex[:8]
        self.pairs: list[Pair] = []
        self.tracker = Tracker()
        self._clients: list[socketio.AsyncClient] = []

    async def connect(self, token: str, receiver: bool) -> socketio.AsyncClient:
        client = socketio.AsyncClient(reconnection=False)
        if receiver:
            client.on("message:new", lambda data: self.tracker.on_push(data))
        self._clients.append(client)
        try:
            await client.connect(
                self.url,
                auth={"token": token},
                socketio_path="socket.io",
                transports=["websocket"],
                wait_timeout=CONNECT_TIMEOUT_S,
            )
        except socketio.exceptions.ConnectionError as exc:
            raise SetupError(f"socket.io connect to {self.url} failed: {exc}") from None
        return client

    async def add_pair(self, index: int, sender_token: str, receiver_token: str, partner_id: str) -> None:
        sender = await self.connect(sender_token, receiver=False)
        receiver = await self.connect(receiver_token, receiver=True)
        ack = await sender.call(
            "conversation:create",
            {"kind": "direct", "participant_ids": [partner_id]},
            timeout=SETUP_ACK_TIMEOUT_S,
        )
        if not (isinstance(ack, dict) and ack.get("ok") is True):
            raise SetupError(f"conversation:create failed: {ack!r}")
        self.pairs.append(Pair(index, sender, receiver, str(ack["data"]["conversation_id"])))

    def body(self, pair: Pair, k: int) -> str:
        return f"load {self.tag} {pair.index} {k} {FILLER}"

    async def send(self, pair: Pair, k: int, t0: float) -> float:
        """Send message k from the pair's sender, timed from t0; the seconds to back off (rate_limited)."""
        tracker = self.tracker
        body = self.body(pair, k)
        tracker.sent_at[body] = t0
        try:
            ack = await pair.sender.call(
                "message:send", {"conversation_id": pair.conversation_id, "body": body}, timeout=self.ack_timeout_s
            )
        except socketio.exceptions.TimeoutError:
            tracker.errors["no_ack"] += 1
            return 0.0
        except socketio.exceptions.SocketIOError:
            tracker.errors["disconnected"] += 1
            await asyncio.sleep(0.1)  # a dead socket fails at once: do not spin
            return 0.0
        t = now()
        if isinstance(ack, dict) and ack.get("ok") is True:
            tracker.on_ack(body, t)
            return 0.0
        error = ack.get("error") if isinstance(ack, dict) else None
        code = error.get("code") if isinstance(error, dict) else None
        tracker.errors[str(code) if code else "bad_ack"] += 1
        retry_after = error.get("retry_after") if isinstance(error, dict) else None
        return float(retry_after) if isinstance(retry_after, int | float) else 0.0

    async def warm_up(self) -> None:
        """One message per pair, acked and pushed, before anything is timed (checks the setup too)."""
        self.tracker = Tracker()
        saved, self.ack_timeout_s = self.ack_timeout_s, SETUP_ACK_TIMEOUT_S
        try:
            await asyncio.gather(*(self.send(pair, -1, now()) for pair in self.pairs))
        finally:
            self.ack_timeout_s = saved
        tracker = self.tracker
        if len(tracker.acks) != len(self.pairs):
            raise SetupError(f"warm-up messages failed: {dict(tracker.errors)}")
        await tracker.drain(SETUP_ACK_TIMEOUT_S)
        if tracker.unpushed:
            raise SetupError("warm-up messages were acked but never pushed to the partner")

    async def close(self) -> None:
        for client in self._clients:
            try:
                if client.connected:
                    await asyncio.wait_for(client.disconnect(), 5)
            except (TimeoutError, socketio.exceptions.SocketIOError):
                pass


async def _register(http: httpx.AsyncClient, username: str) -> tuple[str, str]:
    """user_id and access token of a new user (waits out 429s a bounded number of times)."""
    for path, payload, expect in (
        ("/auth/register", {"username": username, "password": PASSWORD}, 201),
        ("/auth/login", {"username": username, "password": PASSWORD}, 200),
    ):
        for _ in range(REGISTER_ATTEMPTS):
            r = await http.post(path, json=payload)
            if r.status_code != 429:
                break
            await asyncio.sleep(min(float(r.headers.get("Retry-After", "1")), 10.0))
        if r.status_code != expect:
            raise SetupError(f"POST {path} -> {r.status_code}: {r.text[:300]}")
        if path == "/auth/register":
            user_id = str(r.json()["user_id"])
    return user_id, str(r.json()["access_token"])


async def platform_fleet(url: str, senders: int, ack_timeout_s: float) -> Fleet:
    """N registered senders, each in a direct conversation with its own registered partner."""
    fleet = Fleet(url, ack_timeout_s)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            limit = asyncio.Semaphore(4)  # password hashing is CPU-bound on the server

            async def user(name: str) -> tuple[str, str]:
                async with limit:
                    return await _register(http, name)

            try:
                users = await asyncio.gather(
                    *(user(f"load{fleet.tag}{role}{i}") for i in range(senders) for role in ("s", "r"))
                )
            except httpx.HTTPError as exc:
                raise SetupError(f"registering users on {url} failed: {exc!r}") from None
        for i in range(senders):
            (_sender_id, sender_token), (receiver_id, receiver_token) = users[2 * i], users[2 * i + 1]
            await fleet.add_pair(i, sender_token, receiver_token, receiver_id)
        await fleet.warm_up()
    except BaseException:
        await fleet.close()
        raise
    return fleet


async def echo_fleet(url: str, senders: int, ack_timeout_s: float) -> Fleet:
    """The same pairs against the echo server, where a user is just a name."""
    fleet = Fleet(url, ack_timeout_s)
    try:
        for i in range(senders):
            sender, receiver = f"s{i}", f"r{i}"
            await fleet.add_pair(i, sender, receiver, receiver)
        await fleet.warm_up()
    except BaseException:
        await fleet.close()
        raise
    return fleet


async def closed_loop(
    fleet: Fleet,
    window: int,
    seconds: float,
    max_messages: int,
    drain_s: float,
    decay: bool = False,
    processes: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """N senders x W messages in flight each until `seconds` or `max_messages` have been sent.

    With `decay`, also the throughput and latency of the first and last 10% of the acks, and the
    CPU per acked message in each of those two windows. The CPU the machine (and each of
    `processes`, name -> pid) spent while sending, per acked message."""
    tracker = fleet.tracker = Tracker()
    counter = itertools.count()
    cpu_before = CpuSnapshot.take(processes or {})
    start = now()
    deadline = start + seconds
    samples: list[tuple[float, CpuSnapshot]] = [(start, cpu_before)]

    async def sample_cpu() -> None:
        while True:
            await asyncio.sleep(CPU_SAMPLE_EVERY_S)
            samples.append((now(), CpuSnapshot.take(processes or {})))

    async def slot(pair: Pair) -> None:
        while now() < deadline:
            k = next(counter)
            if k >= max_messages:
                return
            backoff = await fleet.send(pair, k, now())
            if backoff > 0:
                await asyncio.sleep(min(backoff, max(0.0, deadline - now())))

    sampler = asyncio.create_task(sample_cpu()) if decay else None
    try:
        await asyncio.gather(*(slot(pair) for pair in fleet.pairs for _ in range(window)))
    finally:
        if sampler is not None:
            sampler.cancel()
    sent_for = now() - start
    cpu_after = CpuSnapshot.take(processes or {})
    samples.append((start + sent_for, cpu_after))
    acked_while_sending = sum(1 for t, _ in tracker.acks if t <= start + sent_for)
    await tracker.drain(drain_s)
    # A count-bounded run that ended early is measured over the time it took.
    result = tracker.summary(start, min(seconds, sent_for))
    result.update(senders=len(fleet.pairs), window=window)
    result.update(cpu_before.figures(cpu_after, acked_while_sending, sent_for))
    if decay:
        result["first_10pct"], result["last_10pct"] = (
            tenths(tracker.acks, start),
            tenths(tracker.acks, start, last=True),
        )
        result["push_first_10pct"] = tenths(tracker.pushes, start)
        result["push_last_10pct"] = tenths(tracker.pushes, start, last=True)
        n = len(tracker.acks) // 10
        arrivals = sorted(t for t, _ in tracker.acks)
        if n > 0:
            result["cpu_first_10pct"] = window_cpu(samples, arrivals, start, arrivals[n - 1])
            result["cpu_last_10pct"] = window_cpu(samples, arrivals, arrivals[-n - 1], arrivals[-1])
    return result


def window_cpu(
    samples: list[tuple[float, CpuSnapshot]], arrivals: list[float], begin: float, end: float
) -> dict[str, Any]:
    """CPU per acked message between the last sample at or before `begin` and the first at or after
    `end` (the whole run's ends when none), counting the acks that arrived in between."""
    before = [(t, snap) for t, snap in samples if t <= begin] or samples[:1]
    after = [(t, snap) for t, snap in samples if t >= end] or samples[-1:]
    (t0, first), (t1, last) = before[-1], after[0]
    acked = bisect.bisect_right(arrivals, t1) - bisect.bisect_right(arrivals, t0)
    return first.figures(last, acked, t1 - t0)


def tenths(records: list[tuple[float, float]], start: float, last: bool = False) -> dict[str, Any]:
    """Throughput and p50/p99 latency of the first (or last) 10% of records, in arrival order."""
    ordered = sorted(records)
    n = len(ordered)
    m = n // 10
    if m == 0:
        return {"count": 0, "per_s": None, "p50_ms": None, "p99_ms": None}
    if last:
        chunk, begin = ordered[n - m :], ordered[n - m - 1][0]
    else:
        chunk, begin = ordered[:m], start
    span = chunk[-1][0] - begin
    lat = [latency * 1000 for _, latency in chunk]
    return {
        "count": m,
        "per_s": round(m / span, 1) if span > 0 else None,
        "p50_ms": _round(percentile(lat, 0.5)),
        "p99_ms": _round(percentile(lat, 0.99)),
    }


async def open_loop(fleet: Fleet, rate: float, seconds: float, drain_s: float) -> dict[str, Any]:
    """`rate` messages/s in all, round-robin over the senders, on a fixed timetable whatever the acks.

    Latency is timed from each message's scheduled time, so a client that falls behind its
    timetable shows up in the figures (max_schedule_lag_ms says by how much)."""
    tracker = fleet.tracker = Tracker()
    total = max(1, int(rate * seconds))
    pending: set[asyncio.Task[float]] = set()
    start = now() + 0.05
    max_lag = 0.0
    for k in range(total):
        scheduled = start + k / rate
        delay = scheduled - now()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            max_lag = max(max_lag, -delay)
        task = asyncio.create_task(fleet.send(fleet.pairs[k % len(fleet.pairs)], k, scheduled))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.gather(*pending)  # each bounded by the ack timeout
    await tracker.drain(drain_s)
    result = tracker.summary(start, seconds, whole=True)
    result.update(senders=len(fleet.pairs), rate=round(rate, 1), max_schedule_lag_ms=round(max_lag * 1000, 1))
    return result
