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
    LOCAL_HOST,
    BinaryMissing,
    LaunchContext,
    LocalServer,
    ServerStartError,
    all_servers,
)
from infra.localstack.supervisor import Child, Supervisor, with_log_tail
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
        names = [name for s in self.servers for name in (s.role, *s.extra_ports)]
        self.ports = choose_ports(names, stored, LOCAL_HOST)
        write_ports(self.data_dir, {**stored, **self.ports})
        updates: dict[str, Any] = {"data_dir": self.data_dir.root}
        if not self.settings.jwt_secret:
            updates["jwt_secret"] = secrets.jwt_secret
        if not self.settings.s3_secret_key:
            updates["s3_secret_key"] = secrets.s3_secret_key
        if not self.settings.master_key:
            updates["master_key"] = secrets.master_key
        for server in self.servers:
            updates.update(server.resolved(self.settings, self.ports[server.role]))
        return self.settings.model_copy(update=updates)

    async def start(self) -> Settings:
        """Start the local servers, wait until each is ready; the resolved settings.

        On failure raises ServerStartError (the caller stops the supervisor's children).
        """
        resolved = self.resolve()
        try:
            async with asyncio.TaskGroup() as tg:
                for server in self.servers:
                    tg.create_task(self._start_one(server, resolved))
        except ExceptionGroup as group:
            # Report the first server that failed; the TaskGroup already cancelled the others.
            first = _first_leaf(group)
            if isinstance(first, ServerStartError):
                raise first from None
            raise
        return resolved

    async def _start_one(self, server: LocalServer, settings: Settings) -> None:
        extra = {name: self.ports[name] for name in server.extra_ports}
        ctx = LaunchContext(self.data_dir, self.ports[server.role], settings, extra)
        try:
            argv = server.argv(ctx)
        except BinaryMissing as e:
            raise ServerStartError(f"{server.name} cannot start: {e}") from None
        try:
            await asyncio.to_thread(server.prepare, ctx)
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
