"""Child processes of `parley up`: start with a log file, watch, stop in order.

Every child dies with its parent (PR_SET_PDEATHSIG=SIGKILL), runs in its own process group
(a Ctrl-C in the terminal reaches only `parley up`, which then stops the children in order)
and writes stdout and stderr to one log file (appended to across restarts).

A child that ends without being asked to can be started again from the same command line
(`Supervisor.restart`); `RestartPolicy` says when that is worth doing and when a child that
keeps dying should stop everything instead.

PR_SET_PDEATHSIG fires when the *thread* that forked the child ends, so children must be
started from the main thread (never from `asyncio.to_thread`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

_PR_SET_PDEATHSIG = 1
Kind = Literal["server", "process"]


@functools.cache
def _prctl() -> Callable[..., int]:
    # Loaded in the parent: dlopen in a forked child of a threaded parent can deadlock.
    libc = ctypes.CDLL(None, use_errno=True)
    prctl: Callable[..., int] = libc.prctl
    return prctl


def die_with_parent() -> Callable[[], None]:
    """A `preexec_fn` that makes the child get SIGKILL when this process dies."""
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("start children from the main thread (PR_SET_PDEATHSIG follows the forker)")
    prctl = _prctl()
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def read_log(path: Path, start: int = 0, limit: int = 256 * 1024) -> str:
    """A log file's text written after byte offset `start` (at most its last `limit` bytes)."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(start, size - limit))
            data = f.read()
    except OSError:
        return ""
    return data.decode(errors="replace")


def last_lines(text: str, lines: int = 20) -> str:
    return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class Launch:
    """How a child is started: enough to start it again."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    log_path: Path
    cwd: Path

    def popen(self, name: str) -> tuple[subprocess.Popen[bytes], int]:
        """The started process, and the byte offset in its log where this run's output begins."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n===== parley: starting {name} at {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
            log.flush()
            start = log.tell()
            proc = subprocess.Popen(
                list(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(self.env),
                cwd=self.cwd,
                process_group=0,
                preexec_fn=die_with_parent(),
            )
        return proc, start


@dataclass
class Child:
    name: str  # what messages call it, e.g. "mongo (mongod)" or "worker-1"
    kind: Kind
    proc: subprocess.Popen[bytes]
    log_path: Path
    log_start: int  # byte offset where this run's output begins
    launch: Launch | None = None  # None: cannot be restarted
    stopping: bool = False
    killed: bool = False  # needed SIGKILL after the grace period
    # Turns this run's log into the few lines worth showing (default: the last lines).
    summarize: Callable[[str], str] | None = None
    restarts: deque[float] = field(default_factory=deque)  # monotonic times of recent restarts

    @property
    def pid(self) -> int:
        return self.proc.pid

    def exit_code(self) -> int | None:
        return self.proc.poll()

    def tail(self, lines: int = 20) -> str:
        text = read_log(self.log_path, self.log_start)
        return self.summarize(text) if self.summarize is not None else last_lines(text, lines)

    def how_it_ended(self) -> str:
        code = self.proc.returncode
        return f"killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"

    def describe_exit(self) -> str:
        """One line naming the child and how it ended, then the tail of its log."""
        return with_log_tail(f"{self.name} {self.how_it_ended()}", self)

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)  # the whole group: helpers a child spawned go too

    async def wait_exit(self, within_s: float) -> int | None:
        """The exit code, or None if still running after `within_s` seconds."""
        deadline = time.monotonic() + within_s
        while True:
            code = self.proc.poll()
            if code is not None or time.monotonic() >= deadline:
                return code
            await asyncio.sleep(0.05)

    async def stop(self, grace_s: float) -> int:
        """SIGTERM, wait up to `grace_s` seconds, then SIGKILL; the exit code."""
        self.stopping = True
        self.signal(signal.SIGTERM)
        code = await self.wait_exit(grace_s)
        if code is None:
            self.killed = True
            self.signal(signal.SIGKILL)
            code = await self.wait_exit(60.0)
        return code if code is not None else self.proc.wait()


@dataclass(frozen=True)
class RestartPolicy:
    """Restart a child that died, unless it died `max_restarts` times within `window_s` seconds
    (then it is broken, not unlucky, and the platform stops). Restarts wait a little longer each
    time: `backoff_s` doubled per recent restart, at most `max_backoff_s`."""

    max_restarts: int = 5
    window_s: float = 60.0
    backoff_s: float = 0.5
    max_backoff_s: float = 5.0

    def recent(self, child: Child, now: float) -> int:
        while child.restarts and now - child.restarts[0] > self.window_s:
            child.restarts.popleft()
        return len(child.restarts)

    def delay(self, child: Child, now: float) -> float | None:
        """Seconds to wait before restarting `child`, or None when it must not be restarted."""
        if child.launch is None:
            return None
        recent = self.recent(child, now)
        if recent >= self.max_restarts:
            return None
        return float(min(self.max_backoff_s, self.backoff_s * (2**recent)))


def indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def with_log_tail(message: str, child: Child) -> str:
    """`message (log: PATH)` followed by the indented tail of the child's log."""
    tail = child.tail()
    return f"{message} (log: {child.log_path})" + ("\n" + indent(tail) if tail else "")


@dataclass
class Supervisor:
    """The children of one `parley up`, in start order."""

    children: list[Child] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        kind: Kind,
        env: Mapping[str, str],
        log_path: Path,
        cwd: Path,
    ) -> Child:
        launch = Launch(tuple(argv), dict(env), log_path, cwd)
        proc, start = launch.popen(name)
        child = Child(name=name, kind=kind, proc=proc, log_path=log_path, log_start=start, launch=launch)
        self.children.append(child)
        return child

    def restart(self, child: Child) -> None:
        """Start an ended child again from its command line (same log file, same place in the order)."""
        if child.launch is None:
            raise RuntimeError(f"{child.name} cannot be restarted")
        if child.exit_code() is None:
            raise RuntimeError(f"{child.name} is still running")
        child.proc, child.log_start = child.launch.popen(child.name)
        child.restarts.append(time.monotonic())

    def find(self, name: str) -> Child | None:
        return next((c for c in self.children if c.name == name), None)

    def first_unexpected_exit(self) -> Child | None:
        """A child that ended without being asked to."""
        for child in self.children:
            if not child.stopping and child.exit_code() is not None:
                return child
        return None

    async def stop_all(self, process_timeout: float = 10.0, server_timeout: float = 20.0) -> None:
        """Platform processes first (together), then servers one by one in reverse start order."""
        processes = [c for c in self.children if c.kind == "process"]
        await asyncio.gather(*(c.stop(process_timeout) for c in processes))
        for child in reversed(self.children):
            if child.kind == "server":
                await child.stop(server_timeout)
