"""What the load runs against: a throwaway `parley up`, the bare echo server, and the raw broker.

Children are started from the main thread with ``die_with_parent`` (they get SIGKILL if this
process dies) and stopped with SIGTERM (SIGKILL after a timeout) when the run ends.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from infra.localstack.ports import free_port
from infra.localstack.supervisor import die_with_parent

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 240.0
ECHO_READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 60.0
RAW_RECORD_BYTES = 512  # about the size of a `message:send` command record on the commands topic
RAW_WINDOW = 20_000  # records produced and not yet acknowledged, at most


# The throwaway platform measures throughput, not the limiter: every sender is one user sending as
# fast as its window allows, and every client registers from 127.0.0.1. The limiter still runs
# (its Redis round trip per event is part of the cost), with limits no bench reaches.
UNREACHED = {"limit": 100_000_000, "period_s": 1}
BENCH_RATE_LIMITS = {name: UNREACHED for name in ("command", "query", "login_address", "register_address")}


class StartError(Exception):
    """A child server did not start (the message says why, with the tail of its log)."""


def _tail(path: Path, limit: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return ""


class Child:
    """A child process whose output goes to a log file."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                argv,
                cwd=REPO_ROOT,
                env={**os.environ, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent(),
            )

    def wait_http(self, url: str, timeout_s: float) -> None:
        """Until GET url answers 200; StartError if the child exits or the timeout passes."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise StartError(
                    f"{self.name} exited with {self.proc.returncode} before it was ready; "
                    f"its last output:\n{_tail(self.log_path)}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                raise StartError(
                    f"{self.name} not ready after {timeout_s:.0f} s; its last output:\n{_tail(self.log_path)}"
                )
            time.sleep(0.5)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, then SIGKILL after the timeout; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return -signal.SIGKILL


def start_platform(
    data_dir: Path,
    log_path: Path,
    rate_limits: dict[str, dict[str, int]] | None = None,
    extra: tuple[str, ...] = (),
) -> tuple[Child, str]:
    """`parley up` on a fresh data dir and a free port, once /ready answers 200; and its URL.

    `rate_limits` replace the bench's (limits no bench reaches on the commands, queries and auth);
    `extra` are more arguments of `parley up` (e.g. ``("--gateways", "2")``)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "api.cli.main", "up", "--data-dir", str(data_dir), "--port", str(port), *extra]
    child = Child("parley up", argv, log_path, env={"PARLEY_RATE_LIMITS": json.dumps(rate_limits or BENCH_RATE_LIMITS)})
    try:
        child.wait_http(f"{url}/ready", READY_TIMEOUT_S)
    except BaseException:
        child.stop()
        raise
    return child, url


def start_echo(log_path: Path) -> tuple[Child, str]:
    """The bare socket.io echo server (bench.load.echo) under uvicorn, as the gateway runs (wsproto)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.load.echo:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--ws",
        "wsproto",
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    child = Child("echo server", argv, log_path)
    try:
        child.wait_http(f"{url}/socket.io/?EIO=4&transport=polling", ECHO_READY_TIMEOUT_S)
    except BaseException:
        child.stop()
        raise
    return child, url


async def raw_produce(
    bootstrap: str, seconds: float, max_records: int, partitions: int, replication_factor: int
) -> dict[str, Any]:
    """Batched produce (acks=all, idempotent, as the platform's producers) to a throwaway topic.

    Records/s of acknowledged records over the time from the first send to the last ack."""
    topic = f"bench-load-raw-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="parley-bench-load")
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, replication_factor)])
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            client_id="parley-bench-load",
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=256 * 1024,
        )
        await producer.start()
        value = b"x" * RAW_RECORD_BYTES
        acked = 0
        errors = 0
        try:
            pending: list[asyncio.Future[Any]] = []
            start = time.perf_counter()
            deadline = start + seconds
            sent = 0
            while sent < max_records and time.perf_counter() < deadline:
                key = f"conversation:{sent % 1000}".encode()
                pending.append(await producer.send(topic, value, key=key))
                sent += 1
                if len(pending) >= RAW_WINDOW:
                    done, errs = await _settle(pending[: RAW_WINDOW // 2])
                    acked, errors = acked + done, errors + errs
                    del pending[: RAW_WINDOW // 2]
            done, errs = await _settle(pending)
            acked, errors = acked + done, errors + errs
            elapsed = time.perf_counter() - start
        finally:
            await producer.stop()
    finally:
        try:
            await admin.delete_topics([topic])
        finally:
            await admin.close()
    return {
        "seconds": round(elapsed, 2),
        "records": acked,
        "errors": errors,
        "record_bytes": RAW_RECORD_BYTES,
        "records_per_s": round(acked / elapsed, 1) if elapsed > 0 else None,
    }


async def _settle(futures: list[asyncio.Future[Any]]) -> tuple[int, int]:
    results = await asyncio.gather(*futures, return_exceptions=True)
    failed = sum(1 for r in results if isinstance(r, BaseException))
    return len(results) - failed, failed
