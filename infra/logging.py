"""Structured JSON logs carrying the correlation id, process and event/command type."""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

correlation_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("correlation_id", default=None)
message_type_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("message_type", default=None)

_PROCESS = {"name": os.path.basename(sys.argv[0]) if sys.argv else "parley"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "process": _PROCESS["name"],
            "pid": record.process,
            "msg": record.getMessage(),
        }
        cid = getattr(record, "correlation_id", None) or correlation_id_var.get()
        if cid:
            doc["correlation_id"] = cid
        mtype = getattr(record, "type", None) or message_type_var.get()
        if mtype:
            doc["type"] = mtype
        for key in (
            "event_id",
            "command_id",
            "stream_id",
            "events",
            "projection",
            "sid",
            "user_id",
            "code",
            "latency_ms",
        ):
            value = getattr(record, key, None)
            if value is not None:
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def configure_logging(process: str, level: str = "INFO", as_json: bool = True) -> None:
    """Route every logger (ours, Faust's, uvicorn's) through one JSON handler on stderr."""
    _PROCESS["name"] = process
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if as_json else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in (
        "aiokafka",
        "kafka",
        "faust",
        "mode",
        "pymongo",
        "elastic_transport",
        "engineio",
        "socketio",
    ):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def logging_dict_config(process: str, level: str = "INFO") -> dict[str, Any]:
    """The same JSON logging as a dictConfig, for runners that configure logging themselves (Faust)."""
    _PROCESS["name"] = process
    quiet = {"level": "WARNING"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "infra.logging.JsonFormatter"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {name: dict(quiet) for name in ("aiokafka", "faust", "mode", "pymongo", "socketio", "engineio")},
    }
