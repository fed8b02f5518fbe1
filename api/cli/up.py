"""`parley up`: the whole platform on one machine.

Locks the data dir, starts the servers whose URL is empty (infra/localstack), writes run.json,
provisions topics, bucket and indexes, starts the workers (`--workers M`, one consumer group) and
the gateways (`--gateways N`, sharing the port through SO_REUSEPORT), waits for /ready, then
supervises. A child that ends unexpectedly is restarted from the same command line, on the same
data (a broker or mongod after a crash, a worker whose partitions another worker took meanwhile);
one that dies `RestartPolicy.max_restarts` times within its window stops everything (exit 1).
SIGINT/SIGTERM stop everything in order (exit 0).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from pydantic import ValidationError
from redis.asyncio import Redis

from infra.localstack.datadir import DataDir, DataDirLocked, DirLock
from infra.localstack.ports import cannot_listen_on, free_port, port_is_free
from infra.localstack.runfile import RunInfo, remove_run_info, settings_env, write_run_info
from infra.localstack.servers import ServerStartError
from infra.localstack.stack import LocalStack
from infra.localstack.supervisor import Child, RestartPolicy, Supervisor, indent
from infra.provision import provision
from infra.redis_client import live_workers, redis_client, worker_key_pattern
from infra.settings import Settings

READY_TIMEOUT_S = 180.0
CANCEL_WAIT_S = 5.0
LIVENESS_CHECK_S = 2.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _say(message: str) -> None:
    print(f"parley: {message}", file=sys.stderr, flush=True)


def run_up(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir
    gateways: int = getattr(args, "gateways", 1)
    workers: int = getattr(args, "workers", 1)
    return asyncio.run(_up(data_dir, port=args.port, host=args.host, gateways=gateways, workers=workers))


async def _up(data_dir: Path, port: int, host: str, gateways: int = 1, workers: int = 1) -> int:
    # Before the data dir is created or locked: a host this machine cannot listen on is bad input.
    problem = cannot_listen_on(host)
    if problem is not None:
        _say(f"invalid --host: {problem}")
        return 2
    dd = DataDir.at(data_dir)
    try:
        lock = DirLock.acquire(dd)
    except DataDirLocked as e:
        _say(str(e))
        return 2
    except OSError as e:
        _say(f"cannot use data dir {dd.root}: {e}")
        return 2
    with lock:
        try:
            settings = Settings(data_dir=dd.root, port=port, host=host)
        except ValidationError as e:
            _say(f"invalid settings: {' '.join(str(e).split())}")
            return 2
        if not port_is_free(port, host):
            _say(f"port {port} on {host} is already in use (choose another with --port)")
            return 1
        return await _Platform(settings, dd, gateways=gateways, workers=workers).run()


def _connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


async def _http_get(url: str) -> tuple[int, str]:
    """Status and body of a GET (status 0 when nothing answered)."""

    def get() -> tuple[int, str]:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return int(resp.status), resp.read(2000).decode(errors="replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read(2000).decode(errors="replace")
        except OSError as e:
            return 0, str(e)

    return await asyncio.to_thread(get)


def process_names(kind: str, count: int) -> list[str]:
    """`worker` alone, or `worker-1` .. `worker-M` (the names of their logs, too)."""
    return [kind] if count == 1 else [f"{kind}-{i}" for i in range(1, count + 1)]


class _Platform:
    def __init__(self, settings: Settings, data_dir: DataDir, gateways: int = 1, workers: int = 1) -> None:
        self.settings = settings
        self.data_dir = data_dir
        self.gateways = gateways
        self.workers = workers
        self.supervisor = Supervisor()
        self.policy = RestartPolicy()
        self.gateway_url = f"http://{_connect_host(settings.host)}:{settings.port}"
        self.info: RunInfo | None = None
        self.metrics_urls: list[str] = []

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        received: list[signal.Signals] = []

        def on_signal(sig: signal.Signals) -> None:
            received.append(sig)
            stop.set()

        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, on_signal, sig)
        work = asyncio.create_task(self._start_and_supervise())
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if work.done():
                code = work.result()
            else:
                _say(f"{received[0].name}: stopping")
                work.cancel()
                # Whatever it was waiting on, stopping the children must not wait for it for long.
                await asyncio.wait({work}, timeout=CANCEL_WAIT_S)
                code = 0
        finally:
            stopped.cancel()
            t0 = time.monotonic()
            await self.supervisor.stop_all()
            remove_run_info(self.data_dir)
            for child in self.supervisor.children:
                if child.killed:
                    _say(f"{child.name} did not stop in time: killed")
            for sig in STOP_SIGNALS:
                loop.remove_signal_handler(sig)
        if code == 0:
            _say(f"stopped in {time.monotonic() - t0:.1f} s")
        return code

    async def _start_and_supervise(self) -> int:
        t0 = time.monotonic()
        try:
            resolved = await LocalStack(self.settings, self.data_dir, self.supervisor).start()
        except ServerStartError as e:
            _say(str(e))
            return 1
        t_servers = time.monotonic()
        if "worker_metrics_port" not in self.settings.model_fields_set:
            # Not chosen by the user: a free one, so that several platforms run side by side.
            resolved = resolved.model_copy(update={"worker_metrics_port": free_port(_connect_host(self.settings.host))})
        info = RunInfo(pid=os.getpid(), settings_env=settings_env(resolved), gateway_url=self.gateway_url)
        self.info = info
        self._write_run_info()
        try:
            await provision(resolved)
            if not self.settings.external()["redis"]:
                await _forget_previous_workers(resolved)
        except Exception as e:  # any failure here is reported as one line, then everything stops
            _say(f"provisioning failed: {type(e).__name__}: {e}")
            return 1
        t_provisioned = time.monotonic()

        if self.workers > resolved.partitions:
            _say(
                f"{self.workers} workers for {resolved.partitions} partitions: "
                f"{self.workers - resolved.partitions} will stay idle (PARLEY_PARTITIONS sets the partition count)"
            )
        self._start_processes(resolved, {**os.environ, **info.settings_env})
        code = await self._wait_ready(resolved)
        if code != 0:
            return code
        t_ready = time.monotonic()
        print(
            f"parley: ready at {self.gateway_url} (data dir {self.data_dir.root}, logs in {self.data_dir.logs})",
            flush=True,
        )
        if self.metrics_urls:
            _say(f"worker metrics at {', '.join(self.metrics_urls)} (gateway metrics at {self.gateway_url}/metrics)")
        _say(
            f"started in {t_ready - t0:.1f} s (servers {t_servers - t0:.1f} s, "
            f"provisioning {t_provisioned - t_servers:.1f} s, "
            f"workers and gateways {t_ready - t_provisioned:.1f} s)"
        )
        while True:
            dead = self.supervisor.first_unexpected_exit()
            if dead is not None:
                delay = self.policy.delay(dead, time.monotonic())
                if delay is None:
                    _say(
                        f"{_unexpected(dead)}\n(it ended {self.policy.max_restarts} times within "
                        f"{self.policy.window_s:.0f} s: not restarted again)"
                    )
                    return 1
                _say(f"{dead.name} {dead.how_it_ended()}: restarting it in {delay:.1f} s (log: {dead.log_path})")
                await asyncio.sleep(delay)
                self.supervisor.restart(dead)
                self._write_run_info()
                continue
            await asyncio.sleep(0.25)

    def _start_processes(self, resolved: Settings, env: dict[str, str]) -> None:
        """The workers, then the gateways, each with its own log, state dir and metrics port."""
        host = _connect_host(self.settings.host)
        chosen_metrics = "worker_metrics_port" in self.settings.model_fields_set
        for i, name in enumerate(process_names("worker", self.workers)):
            port = resolved.worker_metrics_port
            if i > 0 and port:
                port = port + i if chosen_metrics else free_port(host)
            state_dir = self.data_dir.root / "worker" / resolved.worker_id / name
            own = {"PARLEY_WORKER_METRICS_PORT": str(port), "PARLEY_WORKER_STATE_DIR": str(state_dir)}
            self._start(name, "worker", {**env, **own})
            if port:
                self.metrics_urls.append(f"http://{host}:{port}/metrics")
        shared = {"PARLEY_GATEWAY_REUSE_PORT": "true"} if self.gateways > 1 else {}
        for name in process_names("gateway", self.gateways):
            self._start(name, "gateway", {**env, **shared})
        self._write_run_info()

    def _start(self, name: str, command: str, env: dict[str, str]) -> None:
        # The user's working dir: `-m api.cli.main` must resolve as it did for this process.
        self.supervisor.start(
            name,
            [sys.executable, "-m", "api.cli.main", command],
            kind="process",
            env=env,
            log_path=self.data_dir.log_file(name),
            cwd=Path.cwd(),
        )

    def _write_run_info(self) -> None:
        if self.info is not None:
            self.info.processes.clear()
            self.info.processes.update({c.name: c.pid for c in self.supervisor.children})
            write_run_info(self.data_dir, self.info)

    async def _wait_ready(self, resolved: Settings) -> int:
        """Until /ready answers 200 and every worker has its share of the partitions (the group
        has settled: a command sent now is not held up by a rebalance)."""
        client = redis_client(resolved)  # one client for every liveness check of the wait
        try:
            return await self._poll_ready(resolved, client)
        finally:
            await client.aclose()

    async def _poll_ready(self, resolved: Settings, client: Redis) -> int:
        url = f"{self.gateway_url}/ready"
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            dead = self.supervisor.first_unexpected_exit()
            if dead is not None:
                _say(_unexpected(dead))
                return 1
            status, body = await _http_get(url)
            if status == 200:
                # A worker beyond the partition count gets none, and never reports in.
                expected = min(self.workers, resolved.partitions)
                workers = await _live_workers(client, resolved)
                if workers >= expected:
                    return 0
                status, body = 503, f"{workers} of {expected} workers hold partitions"
            if time.monotonic() > deadline:
                tails = "\n".join(
                    f"  {c.name} (log: {c.log_path}):\n{indent(c.tail(10))}"
                    for c in self.supervisor.children
                    if c.kind == "process"
                )
                _say(f"not ready after {READY_TIMEOUT_S:.0f} s: GET {url} answered {status}: {body}\n{tails}")
                return 1
            await asyncio.sleep(0.5)


async def _live_workers(client: Redis, settings: Settings) -> int:
    """How many workers report a settled assignment (their liveness keys in Redis)."""
    try:
        async with asyncio.timeout(LIVENESS_CHECK_S):
            return len(await live_workers(client, settings))
    except Exception:  # Redis not answering yet: /ready says why
        return 0


async def _forget_previous_workers(settings: Settings) -> None:
    """Drop the liveness keys of the last run's worker.

    Redis keeps them in its append-only file until their TTL ends, and the gateway's /ready
    would trust them before the new worker has joined. Only for the local Redis: this data
    dir's lock guarantees that no worker of ours is running now.
    """
    client = redis_client(settings)
    try:
        keys = [key async for key in client.scan_iter(match=worker_key_pattern(settings))]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def _unexpected(child: Child) -> str:
    return f"stopping everything: {child.describe_exit()}"
