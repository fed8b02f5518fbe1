"""`parley gateway` (HTTP + Socket.IO under uvicorn) and `parley worker` (see api.cli.worker)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys
import threading
from collections.abc import Generator
from contextlib import contextmanager
from types import FrameType

import uvicorn

log = logging.getLogger("parley.gateway")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
GRACEFUL_SHUTDOWN_S = 10


class _GatewayServer(uvicorn.Server):
    """uvicorn's server, but a SIGTERM/SIGINT ends in a graceful shutdown and a normal return
    (uvicorn re-raises the signal after shutting down, which would kill the process)."""

    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        log.info("received %s: shutting down", signal.Signals(sig).name)
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True  # a second Ctrl-C: stop waiting for open connections
        self.should_exit = True


def shared_port_socket(host: str, port: int) -> socket.socket:
    """A listening socket that other gateway processes bind too (SO_REUSEPORT): the kernel hands
    each new connection to one of them. A Socket.IO session lives in the process that accepted it,
    so clients of a shared port use the WebSocket transport (long-polling needs sticky sessions)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock


def run_gateway(args: argparse.Namespace) -> int:
    from api.cli.context import NoPlatformError, load_settings
    from api.http.app import create_app
    from infra import gc_tuning
    from infra.logging import configure_logging

    try:
        settings = load_settings(getattr(args, "data_dir", None))
    except NoPlatformError as exc:
        print(f"parley: {exc}", file=sys.stderr)
        return 2
    configure_logging("gateway", settings.log_level, settings.log_json)
    host = getattr(args, "host", None) or settings.host
    port = getattr(args, "port", None) or settings.port
    config = uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        lifespan="on",
        ws="wsproto",
        log_config=None,  # keep the JSON logging configured above
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    server = _GatewayServer(config)
    gc_tuning.for_service()
    sockets = None
    if settings.gateway_reuse_port:
        try:
            sockets = [shared_port_socket(host, port)]
        except OSError as exc:
            log.error("cannot listen on %s:%d with SO_REUSEPORT: %s", host, port, exc)
            return 1
    asyncio.run(server.serve(sockets=sockets))
    if not server.started:
        log.error("gateway failed to start")
        return 1
    return 0


def run_worker(args: argparse.Namespace) -> int:
    from api.cli.worker import run_worker as _run_worker

    return _run_worker(args)
