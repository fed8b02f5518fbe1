"""Session fixtures: one `parley up` for the whole test session (starting it is the slow part).

`platform` runs the real command as a subprocess on a temporary data dir and a free port;
`stack_settings` is its Settings, for integration tests that talk to the servers directly.
Tests marked `restart` (which stop and restart the platform) run last.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from api.cli.context import load_settings
from infra.localstack.ports import free_port
from infra.localstack.supervisor import die_with_parent
from infra.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 60.0
# Every test client comes from 127.0.0.1, so the per-address auth limits (sized for real clients)
# would be one budget for the whole session: raised here. The per-user and per-username limits
# keep their defaults (tests/e2e/test_limits_and_probes.py relies on login_username's).
_UNLIMITED = {"limit": 1_000_000, "period_s": 60}
TEST_RATE_LIMITS = {name: _UNLIMITED for name in ("login_address", "register_address", "refresh_address")}


def up_command(data_dir: Path, port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "api.cli.main", "up", "--data-dir", str(data_dir), "--port", str(port), *extra]


def start_up(
    data_dir: Path, port: int, log_path: Path, env: dict[str, str] | None = None, extra: tuple[str, ...] = ()
) -> subprocess.Popen[bytes]:
    """`parley up` as a child that dies with this process (start it from the main thread)."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            up_command(data_dir, port, *extra),
            cwd=REPO_ROOT,
            env=env if env is not None else dict(os.environ),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent(),
        )


def wait_ready(
    proc: subprocess.Popen[bytes], base_url: str, log_path: Path, timeout_s: float = READY_TIMEOUT_S
) -> None:
    """Until GET /ready answers 200; fails early with the output if `parley up` exits."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"parley up exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{base_url}/ready", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"not ready after {timeout_s:.0f} s:\n{log_path.read_text()[-4000:]}")
        time.sleep(0.5)


def stop_up(proc: subprocess.Popen[bytes], timeout_s: float = STOP_TIMEOUT_S) -> int:
    """SIGTERM, and the exit code (SIGKILL after the timeout, which the caller sees as -9)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return -signal.SIGKILL


@dataclass
class Platform:
    """A running `parley up` (blocking methods: call them from the main thread, not a worker thread)."""

    data_dir: Path
    port: int
    log_path: Path  # the output of `parley up` itself; the servers log under data_dir/logs
    extra_args: tuple[str, ...] = ()  # more `parley up` arguments, e.g. ("--gateways", "2")
    rate_limits: dict[str, dict[str, int]] = field(default_factory=lambda: dict(TEST_RATE_LIMITS))
    settings: Settings = field(init=False)
    proc: subprocess.Popen[bytes] | None = None
    start_seconds: list[float] = field(default_factory=list)  # each (re)start until ready

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        t0 = time.monotonic()
        env = {**os.environ, "PARLEY_RATE_LIMITS": json.dumps(self.rate_limits)}
        self.proc = start_up(self.data_dir, self.port, self.log_path, env=env, extra=self.extra_args)
        wait_ready(self.proc, self.base_url, self.log_path)
        self.start_seconds.append(time.monotonic() - t0)
        self.settings = load_settings(self.data_dir)

    def stop(self) -> int:
        """Stop (SIGTERM) and return the exit code; 0 means a clean stop."""
        if self.proc is None:
            return 0
        code = stop_up(self.proc)
        self.proc = None
        return code

    def restart(self) -> None:
        """Stop and start again on the same data dir; settings are reloaded (ports may change)."""
        code = self.stop()
        assert code == 0, f"parley up exited with {code} on SIGTERM:\n{self.log_path.read_text()[-4000:]}"
        self.start()


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("platform")
    with running(Platform(data_dir=root / "data", port=free_port(), log_path=root / "up.log")) as p:
        yield p


@contextmanager
def running(p: Platform) -> Iterator[Platform]:
    """Start `p`, and stop it at the end; a stop that is not clean (exit 0 on SIGTERM) fails."""
    p.start()
    try:
        yield p
    finally:
        code = p.stop()
    assert code == 0, f"parley up exited with {code} on SIGTERM:\n{p.log_path.read_text()[-4000:]}"


@pytest.fixture(scope="session")
def stack_settings(platform: Platform) -> Settings:
    return platform.settings


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that restart the platform run after the others, so those share one running platform;
    the fault-injection tier (its own platform, killing its processes) runs last of all."""

    def order(item: pytest.Item) -> tuple[bool, bool]:
        return item.get_closest_marker("faults") is not None, item.get_closest_marker("restart") is not None

    items.sort(key=order)
