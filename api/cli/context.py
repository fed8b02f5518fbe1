"""Which servers a CLI command talks to.

Precedence (operator commands: replay, audit, projections):
1. ``--data-dir D``: the servers of the `parley up` running on D (an error when none runs there);
2. otherwise the servers the environment names (``PARLEY_KAFKA_BOOTSTRAP``, ``PARLEY_MONGO_URL``, ...);
3. otherwise the `parley up` running on the default data dir (``PARLEY_DATA_DIR``, default ``./.parley``),
   so that a plain ``parley replay`` after ``parley up`` in the same directory just works.
An explicit choice always wins over a guess, and the environment is an explicit choice; the
default data dir is only looked at when nothing was chosen. When nothing is found, the error
says what was tried.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from infra.localstack.datadir import DataDir
from infra.localstack.runfile import pid_alive, read_run_info, settings_from_env
from infra.settings import Settings

# The servers an operator command may need, by Settings field and the variable that names it.
SERVER_VARIABLES = {"kafka_bootstrap": "PARLEY_KAFKA_BOOTSTRAP", "mongo_url": "PARLEY_MONGO_URL"}


class NoPlatformError(Exception):
    """No `parley up` is running on the given data dir (print it as one line, exit 2)."""


@dataclass(frozen=True)
class CliSettings:
    """Settings, and where they came from (for messages)."""

    settings: Settings
    source: str  # "--data-dir D", "the environment" or "D (the default data dir)"


def load_settings(data_dir: Path | None) -> Settings:
    """Settings for a process (gateway, worker) or a command given ``--data-dir``.

    With a data dir: the URLs and secrets of the `parley up` running on it (from DIR/run.json).
    Without: `Settings()` from the environment.
    """
    if data_dir is None:
        return Settings()
    return _running_platform(data_dir)


def resolve_settings(data_dir: Path | None, needed: Sequence[str] = tuple(SERVER_VARIABLES)) -> CliSettings:
    """The settings of an operator command, by the precedence of the module docstring.

    ``needed``: the Settings fields (of SERVER_VARIABLES) the command cannot do without.
    Raises NoPlatformError naming everything that was tried.
    """
    if data_dir is not None:
        return CliSettings(_running_platform(data_dir), f"--data-dir {data_dir}")
    env = Settings()
    missing = [SERVER_VARIABLES[field] for field in needed if not getattr(env, field)]
    if not missing:
        return CliSettings(env, "the environment")
    default = DataDir.at(env.data_dir)
    if len(missing) == len(needed):
        # The environment names none of them: look for a running `parley up` on the default data dir.
        found = _read_platform(default)
        if isinstance(found, Settings):
            return CliSettings(found, f"{default.root} (the default data dir)")
        raise NoPlatformError(
            f"no servers configured: no --data-dir given, {' and '.join(missing)} not set, "
            f"and {found} (start one with `parley up`, or pass --data-dir DIR of a running `parley up`)"
        )
    raise NoPlatformError(
        f"no servers configured: the environment names some servers but not {' and '.join(missing)} "
        "(set it, or pass --data-dir DIR of a running `parley up`)"
    )


def _running_platform(data_dir: Path) -> Settings:
    found = _read_platform(DataDir.at(data_dir))
    if isinstance(found, Settings):
        return found
    raise NoPlatformError(f"{found} (start it with `parley up --data-dir {data_dir}`)")


def _read_platform(dd: DataDir) -> Settings | str:
    """The settings of the `parley up` running on ``dd``, or why there is none (a phrase)."""
    try:
        info = read_run_info(dd)
    except (OSError, ValueError, KeyError) as e:
        return f"cannot read {dd.run_file}: {e}"
    if info is None:
        return f"no platform is running on {dd.root}"
    if not pid_alive(info.pid):
        # run.json outlived a killed `parley up` (a clean stop removes it).
        return f"the platform on {dd.root} is not running (pid {info.pid} is gone)"
    return settings_from_env(info.settings_env)
