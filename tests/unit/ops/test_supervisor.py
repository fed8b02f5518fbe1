"""`parley up`'s supervision: a child that dies is started again from the same command line, and one
that keeps dying stops the platform."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from api.cli.up import process_names
from infra.localstack.supervisor import RestartPolicy, Supervisor


def test_children_are_named_alone_or_numbered() -> None:
    assert process_names("worker", 1) == ["worker"]
    assert process_names("gateway", 3) == ["gateway-1", "gateway-2", "gateway-3"]


async def test_a_killed_child_restarts_from_the_same_command_line_into_the_same_log(tmp_path: Path) -> None:
    supervisor = Supervisor()
    log = tmp_path / "logs" / "sleeper.log"
    argv = [sys.executable, "-c", "import os, time; print('started', os.getpid(), flush=True); time.sleep(60)"]
    child = supervisor.start("sleeper", argv, kind="process", env={}, log_path=log, cwd=tmp_path)
    try:
        first = child.pid
        _printed(log, f"started {first}")
        child.signal(signal.SIGKILL)
        assert await child.wait_exit(10) == -signal.SIGKILL
        assert supervisor.first_unexpected_exit() is child
        supervisor.restart(child)
        assert child.pid != first and child.exit_code() is None
        assert supervisor.first_unexpected_exit() is None
        _printed(log, f"started {child.pid}")
        text = log.read_text()
        assert f"started {first}" in text and f"started {child.pid}" in text  # one log, appended
        assert f"started {child.pid}" in child.tail()  # the tail shows this run only
        assert f"started {first}" not in child.tail()
    finally:
        await supervisor.stop_all(process_timeout=5)
    assert child.exit_code() is not None


def _printed(log: Path, line: str) -> None:
    deadline = time.monotonic() + 10
    while line not in log.read_text():
        assert time.monotonic() < deadline, f"{line!r} not in {log}"
        time.sleep(0.02)


def test_restarts_back_off_and_a_child_that_keeps_dying_is_given_up(tmp_path: Path) -> None:
    policy = RestartPolicy(max_restarts=3, window_s=60, backoff_s=0.5, max_backoff_s=1.5)
    supervisor = Supervisor()
    child = supervisor.start(
        "quick", [sys.executable, "-c", "pass"], kind="process", env={}, log_path=tmp_path / "q.log", cwd=tmp_path
    )
    child.proc.wait()
    delays = []
    now = 1000.0
    while (delay := policy.delay(child, now)) is not None:
        delays.append(delay)
        child.restarts.append(now)
        now += 1
    assert delays == [0.5, 1.0, 1.5]
    # A minute later the old restarts no longer count.
    assert policy.delay(child, now + 61) == 0.5
