"""`parley worker`: one worker process running the Faust agents."""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import logging
import sys

import faust
import redis

from infra import gc_tuning
from infra.logging import configure_logging, logging_dict_config
from infra.settings import Settings

log = logging.getLogger("parley.worker")


async def prepare(settings: Settings) -> None:
    """Topics, indexes and buckets exist; projections whose store was dropped are rebuilt from the log."""
    from infra.provision import provision
    from infra.rebuild import rebuild_missing

    await provision(settings)
    rebuilt = await rebuild_missing(settings)
    for name in rebuilt:
        log.info("projection %s was missing its store: rebuilt from the log", name, extra={"projection": name})


def run_worker(args: argparse.Namespace) -> int:
    from api.cli.context import NoPlatformError, load_settings

    try:
        settings = load_settings(getattr(args, "data_dir", None))
    except NoPlatformError as exc:
        print(f"parley worker: {exc}", file=sys.stderr)
        return 2
    configure_logging("worker", settings.log_level, settings.log_json)
    try:
        asyncio.run(prepare(settings))
    except Exception as exc:
        print(f"parley worker: cannot prepare: {exc}", file=sys.stderr)
        return 1
    from api import bootstrap

    built = bootstrap.worker(settings)
    if settings.worker_metrics_port:
        try:
            built.metrics.serve(settings.host, settings.worker_metrics_port)
        except OSError as exc:
            print(
                f"parley worker: cannot serve metrics on {settings.host}:{settings.worker_metrics_port}: {exc} "
                "(choose another port with PARLEY_WORKER_METRICS_PORT, or 0 for none)",
                file=sys.stderr,
            )
            return 1
        log.info("metrics at http://%s:%d/metrics", settings.host, settings.worker_metrics_port)
    atexit.register(_forget_liveness, settings)
    worker = faust.Worker(
        built.app,
        loglevel=settings.log_level.lower(),
        quiet=True,
        redirect_stdouts=False,
        logging_config=logging_dict_config("worker", settings.log_level),
    )
    gc_tuning.for_service()
    worker.execute_from_commandline()  # runs until SIGTERM / SIGINT, then exits the process
    return 0


def _forget_liveness(settings: Settings) -> None:
    """On a clean exit, stop vouching for readiness at once instead of after the key's TTL."""
    from infra.redis_client import worker_key
    from streams.runtime import instance_name

    key = worker_key(settings, instance_name(settings))
    with contextlib.suppress(redis.RedisError):
        redis.Redis.from_url(settings.redis_url, socket_timeout=1.0).delete(key)
