"""What the operator commands print on stderr: progress, and errors as one line.

Progress is a redrawn bar on a terminal and a plain periodic line otherwise. Errors never
show a traceback: ``run_command`` maps every failure to ``parley <cmd>: <message>`` and an
exit status (2: bad input, 1: a server unavailable or the check failed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from infra.settings import Settings

BAR_WIDTH = 30


class ProgressBar:
    """``update(done, total, phase)`` as often as you like; it redraws at most ``interval`` apart.

    On a TTY: ``rebuild messages [#########.........]  31%  62,000/200,000  41,300 ev/s  catch-up``.
    Not on a TTY: the same text as a line every ``line_interval`` seconds (logs stay readable).
    """

    def __init__(
        self,
        label: str,
        stream: TextIO | None = None,
        *,
        interval: float = 0.1,
        line_interval: float = 5.0,
        tty: bool | None = None,
    ) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval = interval if self.tty else line_interval
        # The rate counts from the first update (the work's start), not from construction: a
        # command's set-up (connecting, locking) would otherwise drag it down.
        self.started: float | None = None
        self._last_draw = float("-inf")
        self._drawn = False
        self._last: tuple[int, int, str] = (0, 0, "")

    def update(self, done: int, total: int, phase: str = "", *, force: bool = False) -> None:
        self._last = (done, total, phase)
        now = time.monotonic()
        if self.started is None:
            self.started = now
        if not force and now - self._last_draw < self.interval:
            return
        self._last_draw = now
        self._draw(self.render(done, total, phase, now - self.started))

    def render(self, done: int, total: int, phase: str, elapsed: float) -> str:
        rate = done / elapsed if elapsed > 0 else 0.0
        parts = [self.label]
        if total > 0:
            fraction = min(1.0, done / total)
            filled = int(fraction * BAR_WIDTH)
            parts.append(f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {fraction * 100:3.0f}%")
            parts.append(f"{done:,}/{total:,}")
        else:
            parts.append(f"{done:,}")
        parts.append(f"{rate:,.0f} ev/s")
        if phase:
            parts.append(phase)
        return "  ".join(parts)

    def _draw(self, text: str) -> None:
        try:
            if self.tty:
                self.stream.write("\r\x1b[2K" + text)
            else:
                self.stream.write(text + "\n")
            self.stream.flush()
            self._drawn = True
        except (OSError, ValueError):
            pass  # progress is a courtesy: a closed stderr must not stop the work

    def finish(self, message: str | None = None) -> None:
        """Draw the final state, then end the line (TTY) and print ``message`` if given."""
        done, total, phase = self._last
        now = time.monotonic()
        self._draw(self.render(done, total, phase, now - (self.started if self.started is not None else now)))
        try:
            if self.tty and self._drawn:
                self.stream.write("\n")
            if message:
                self.stream.write(message + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass


class CliError(Exception):
    """A failure to report as one line; ``status`` 2 for bad input, 1 otherwise."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def load_cli_settings(data_dir: Path | None, *, kafka: bool = True, mongo: bool = True) -> Settings:
    """The settings of ``--data-dir`` (a running ``parley up``), of the environment, or of a running
    ``parley up`` on the default data dir, in that order (see api.cli.context)."""
    from pydantic import ValidationError

    from api.cli.context import NoPlatformError, resolve_settings

    needed = [field for field, wanted in (("kafka_bootstrap", kafka), ("mongo_url", mongo)) if wanted]
    try:
        return resolve_settings(data_dir, needed).settings
    except NoPlatformError as exc:
        raise CliError(str(exc), 2) from None
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {"msg": str(exc)}
        raise CliError(f"invalid settings: {first.get('msg')}", 2) from None


def describe_failure(exc: BaseException, settings: Settings | None = None) -> CliError:
    """One line and a status for any failure (no traceback, no credentials)."""
    from pymongo.errors import ConnectionFailure, PyMongoError

    from infra.kafka.offsets import LogUnavailable

    if isinstance(exc, CliError):
        return exc
    if isinstance(exc, LogUnavailable):
        return CliError(str(exc), 1)
    if isinstance(exc, ConnectionFailure):
        where = _mongo_host(settings.mongo_url) if settings is not None else "its URL"
        detail = _first_line(str(exc)).removeprefix(f"{where}: ")
        return CliError(f"MongoDB unavailable at {where}: {detail}", 1)
    if isinstance(exc, PyMongoError):
        return CliError(f"MongoDB error: {_first_line(str(exc))}", 1)
    return CliError(f"internal error: {type(exc).__name__}: {_first_line(str(exc))}", 1)


def run_command(prog: str, main: Callable[[], Coroutine[Any, Any, int]], settings: Settings | None = None) -> int:
    """Run an async command; SIGTERM cancels it like Ctrl-C so that its cleanup runs."""

    quiet_logging(prog)

    async def guarded() -> int:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        if task is not None:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signal.SIGTERM, task.cancel)
        return await main()

    try:
        return asyncio.run(guarded())
    except KeyboardInterrupt:
        print(f"parley {prog}: interrupted", file=sys.stderr)
        return 130
    except asyncio.CancelledError:
        print(f"parley {prog}: terminated", file=sys.stderr)
        return 143
    except Exception as exc:
        if os.environ.get("PARLEY_DEBUG"):
            raise
        error = describe_failure(exc, settings)
        print(f"parley {prog}: {error.message}", file=sys.stderr)
        return error.status


def quiet_logging(prog: str) -> None:
    """Our warnings as short lines on stderr; the clients' own connection chatter silenced
    (their failures reach the user as one translated line)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"parley {prog}: %(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for noisy in ("aiokafka", "kafka", "pymongo"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL + 1)


def fail(prog: str, message: str, status: int) -> int:
    print(f"parley {prog}: {message}", file=sys.stderr)
    return status


def _first_line(text: str, limit: int = 300) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    line = line.split(", Timeout:")[0].split(" (configured timeouts")[0]  # PyMongo's long tails
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _mongo_host(url: str) -> str:
    """host:port of a MongoDB URL, without credentials."""
    try:
        return urlsplit(url).netloc.rpartition("@")[2] or "the configured URL"
    except ValueError:
        return "the configured URL"
