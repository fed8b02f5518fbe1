"""The layout of a `parley up` data dir and the small files kept in it.

```
DIR/lock          flock held by the running `parley up` (contains its pid)
DIR/secrets.json  S3 secret, JWT secret and master key, generated once (0600)
DIR/ports.json    ports chosen for the local servers, reused on the next start
DIR/run.json      written while a platform runs: how to reach its servers (0600)
DIR/logs/         one log per child process
DIR/kafka/        the Kafka broker's config (written each start) and, in kafka/log/, its log
DIR/s3/           the local S3 server's root (a bucket is a folder)
DIR/mongo/        mongod's dbpath
DIR/redis/        redis' dir (append-only file)
```
Standard library only: every CLI command imports this to read run.json.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self


class DataDirLocked(Exception):
    """Another `parley up` holds the data dir."""


@dataclass(frozen=True)
class DataDir:
    root: Path

    @classmethod
    def at(cls, path: Path) -> DataDir:
        """An absolute data dir (children run with other working dirs)."""
        return cls(path.expanduser().resolve())

    @property
    def lock_file(self) -> Path:
        return self.root / "lock"

    @property
    def secrets_file(self) -> Path:
        return self.root / "secrets.json"

    @property
    def ports_file(self) -> Path:
        return self.root / "ports.json"

    @property
    def run_file(self) -> Path:
        return self.root / "run.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def kafka_path(self) -> Path:
        return self.root / "kafka"

    @property
    def kafka_log_path(self) -> Path:
        return self.kafka_path / "log"

    @property
    def s3_root(self) -> Path:
        return self.root / "s3"

    @property
    def mongo_path(self) -> Path:
        return self.root / "mongo"

    @property
    def redis_path(self) -> Path:
        return self.root / "redis"

    def log_file(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def create(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)


class DirLock:
    """An exclusive flock on DIR/lock, held for the life of `parley up`.

    flock (not a pid file) so that a crashed or killed `parley up` never leaves a stale lock.
    """

    def __init__(self, fd: int, path: Path) -> None:
        self._fd = fd
        self.path = path

    @classmethod
    def acquire(cls, data_dir: DataDir) -> DirLock:
        data_dir.create()
        fd = os.open(data_dir.lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise DataDirLocked(f"another `parley up` (pid {holder}) is already running on {data_dir.root}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return cls(fd, data_dir.lock_file)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def write_private_json(path: Path, data: object) -> None:
    """Write JSON readable by the owner only, atomically (a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    os.chmod(tmp, 0o600)  # O_CREAT's mode is masked by the umask
    os.replace(tmp, path)


def read_json_object(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


@dataclass(frozen=True)
class LocalSecrets:
    s3_secret_key: str
    jwt_secret: str
    master_key: str


def load_or_create_secrets(data_dir: DataDir) -> LocalSecrets:
    """The data dir's secrets, generated on first use and kept so restarts keep tokens and objects valid."""
    path = data_dir.secrets_file
    stored: dict[str, Any] = read_json_object(path) if path.exists() else {}
    values = {name: str(stored.get(name) or secrets.token_urlsafe(32)) for name in ("s3_secret_key", "jwt_secret")}
    # 32 random bytes, urlsafe base64 without padding (infra/security/shredding.py). Losing it
    # loses every user's personal data in the log: it is kept here, never regenerated.
    values["master_key"] = str(stored.get("master_key") or secrets.token_urlsafe(32))
    if values != stored:
        write_private_json(path, values)
    return LocalSecrets(**values)


def read_ports(data_dir: DataDir) -> dict[str, int]:
    path = data_dir.ports_file
    if not path.exists():
        return {}
    return {str(k): int(v) for k, v in read_json_object(path).items()}


def write_ports(data_dir: DataDir, ports: dict[str, int]) -> None:
    write_private_json(data_dir.ports_file, ports)
