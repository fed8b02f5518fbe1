"""DIR/run.json: how to reach the servers of a running `parley up` (read by every other CLI command).

```
{"pid": 1234, "gateway_url": "http://127.0.0.1:8000",
 "settings_env": {"PARLEY_KAFKA_BOOTSTRAP": "127.0.0.1:41234", "PARLEY_MONGO_URL": "mongodb://...", ...},
 "processes": {"kafka (kafka)": 1240, "worker": 1250, "gateway": 1251, ...}}
```
`settings_env` is also the environment the worker and gateway children get. `processes` names every
child of `parley up` with its current pid (rewritten when a child is restarted).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from infra.localstack.datadir import DataDir, read_json_object, write_private_json
from infra.settings import Settings

# Settings fields written to run.json and handed to the worker and gateway: how to reach the
# servers, the secrets, and what names the data (so every CLI command finds the same topics).
RUN_ENV_FIELDS = (
    "kafka_bootstrap",
    "mongo_url",
    "mongo_db",
    "redis_url",
    "elasticsearch_url",
    "s3_endpoint",
    "s3_access_key",
    "s3_secret_key",
    "s3_secure",
    "s3_region",
    "media_bucket",
    "jwt_secret",
    "master_key",
    "data_dir",
    "host",
    "port",
    "topic_prefix",
    "partitions",
    "worker_id",
    "worker_metrics_port",
)


def settings_env(settings: Settings) -> dict[str, str]:
    """The PARLEY_* environment that reproduces these settings' connections (see RUN_ENV_FIELDS)."""
    env: dict[str, str] = {}
    for name in RUN_ENV_FIELDS:
        value = getattr(settings, name)
        env[f"PARLEY_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


def settings_from_env(env: dict[str, str]) -> Settings:
    """The inverse of settings_env; these values win, fields not in it still come from the environment."""
    fields: dict[str, Any] = {k.removeprefix("PARLEY_").lower(): v for k, v in env.items()}
    return Settings(**fields)


@dataclass(frozen=True)
class RunInfo:
    """The content of DIR/run.json."""

    pid: int
    settings_env: dict[str, str]
    gateway_url: str
    processes: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "settings_env": self.settings_env,
            "gateway_url": self.gateway_url,
            "processes": self.processes,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunInfo:
        env = data["settings_env"]
        if not isinstance(env, dict):
            raise ValueError("run.json: settings_env must be an object")
        return cls(
            pid=int(data["pid"]),
            settings_env={str(k): str(v) for k, v in env.items()},
            gateway_url=str(data["gateway_url"]),
            processes={str(k): int(v) for k, v in dict(data.get("processes") or {}).items()},
        )


def write_run_info(data_dir: DataDir, info: RunInfo) -> None:
    write_private_json(data_dir.run_file, info.to_json())


def read_run_info(data_dir: DataDir) -> RunInfo | None:
    """run.json, or None when there is none."""
    try:
        data = read_json_object(data_dir.run_file)
    except FileNotFoundError:
        return None
    return RunInfo.from_json(data)


def remove_run_info(data_dir: DataDir) -> None:
    data_dir.run_file.unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
