"""The local servers of one data dir: start those whose URL is empty, wait until each answers.

```
stack = LocalStack(settings, DataDir.at(path))
resolved = await stack.start()     # Settings with every URL and secret filled in
...
await stack.supervisor.stop_all()
```
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from infra.localstack.datadir import (
    DataDir,
    load_or_create_secrets,
    read_ports,
    write_ports,
)
from infra.localstack.ports import choose_ports
from infra.localstack.servers import (
    KAFKA_LOG_BUCKET,
    LOCAL_HOST,
    BinaryMissing,
    KafkaServer,
    LaunchContext,
    LocalServer,
    S3Server,
    ServerStartError,
    all_servers,
)
from infra.localstack.supervisor import Child, Supervisor, with_log_tail
from infra.provision import ensure_bucket
from infra.settings import Settings

SERVER_READY_TIMEOUT_S = 60.0
CHECK_TIMEOUT_S = 5.0


class LocalStack:
    """The servers `parley up` runs itself for one data dir."""

    def __init__(self, settings: Settings, data_dir: DataDir, supervisor: Supervisor | None = None) -> None:
        self.settings = settings
        self.data_dir = data_dir
        self.supervisor = supervisor if supervisor is not None else Supervisor()
        external = settings.external()
        self.servers: list[LocalServer] = [s for s in all_servers() if not external[s.role]]
        self.ports: dict[str, int] = {}

    def resolve(self) -> Settings:
        """Pick ports and secrets, and fill in every empty URL; remembers the ports in the data dir."""
        self.data_dir.create()
        secrets = load_or_create_secrets(self.data_dir)
        stored = read_ports(self.data_dir)
        self.ports = choose_ports([s.role for s in self.servers], stored, LOCAL_HOST)
        write_ports(self.data_dir, {**stored, **self.ports})
        updates: dict[str, Any] = {"data_dir": self.data_dir.root}
        if not self.settings.jwt_secret:
            updates["jwt_secret"] = secrets.jwt_secret
        if not self.settings.s3_secret_key:
            updates["s3_secret_key"] = secrets.s3_secret_key
        for server in self.servers:
            updates.update(server.resolved(self.settings, self.ports[server.role]))
        return self.settings.model_copy(update=updates)

    async def start(self) -> Settings:
        """Start the local servers, wait until each is ready; the resolved settings.

        On failure raises ServerStartError (the caller stops the supervisor's children).
        """
        resolved = self.resolve()
        by_role = {s.role: s for s in self.servers}
        s3 = by_role.get(S3Server.role)
        kafka = by_role.get(KafkaServer.role)
        others = [s for s in self.servers if s is not s3 and s is not kafka]

        async def s3_then_kafka() -> None:
            if s3 is not None:
                await self._start_one(s3, resolved)
            if kafka is not None:
                if s3 is None:  # an external S3 keeps the log: its bucket must exist first
                    await asyncio.to_thread(_ensure_log_bucket, resolved)
                await self._start_one(kafka, resolved)

        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(s3_then_kafka())
                for server in others:
                    tg.create_task(self._start_one(server, resolved))
        except ExceptionGroup as group:
            # Report the first server that failed; the TaskGroup already cancelled the others.
            first = _first_leaf(group)
            if isinstance(first, ServerStartError):
                raise first from None
            raise
        return resolved

    async def _start_one(self, server: LocalServer, settings: Settings) -> None:
        ctx = LaunchContext(self.data_dir, self.ports[server.role], settings)
        try:
            argv = server.argv(ctx)
        except BinaryMissing as e:
            raise ServerStartError(f"{server.name} cannot start: {e}") from None
        try:
            server.prepare(ctx)
            child = self.supervisor.start(
                server.name,
                argv,
                kind="server",
                env=server.env(ctx),
                log_path=self.data_dir.log_file(server.role),
                cwd=self.data_dir.root,
            )
        except OSError as e:
            raise ServerStartError(f"{server.name} cannot start: {e}") from None
        child.summarize = server.summarize_log
        deadline = time.monotonic() + SERVER_READY_TIMEOUT_S
        await _wait_ready(server, ctx, child, deadline)
        try:
            await server.after_ready(ctx, deadline)
        except ServerStartError as e:
            raise ServerStartError(with_log_tail(str(e), child)) from None


async def _wait_ready(server: LocalServer, ctx: LaunchContext, child: Child, deadline: float) -> None:
    """Poll: the port accepts connections, then a real request succeeds; the child must stay alive."""
    last = "no answer"
    while True:
        if child.exit_code() is not None:
            raise ServerStartError(with_log_tail(f"{server.name} failed to start: {child.how_it_ended()}", child))
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(LOCAL_HOST, ctx.port), CHECK_TIMEOUT_S)
            writer.close()
            await writer.wait_closed()
            await asyncio.wait_for(server.check(ctx), CHECK_TIMEOUT_S)
            return
        except Exception as e:  # any failure means "not ready yet" until the deadline
            last = f"{type(e).__name__}: {e}"
        if time.monotonic() > deadline:
            raise ServerStartError(
                with_log_tail(
                    f"{server.name} failed to start: not ready after {SERVER_READY_TIMEOUT_S:.0f} s ({last})",
                    child,
                )
            )
        await asyncio.sleep(0.1)


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


def _ensure_log_bucket(settings: Settings) -> None:
    ensure_bucket(settings, KAFKA_LOG_BUCKET)
