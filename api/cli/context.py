"""Which servers a CLI command talks to: those of a running `parley up --data-dir D`, or the environment's."""

from __future__ import annotations

from pathlib import Path

from infra.localstack.datadir import DataDir
from infra.localstack.runfile import pid_alive, read_run_info, settings_from_env
from infra.settings import Settings


class NoPlatformError(Exception):
    """No `parley up` is running on the given data dir (print it as one line, exit 2)."""


def load_settings(data_dir: Path | None) -> Settings:
    """Settings for a CLI command.

    With a data dir: the URLs and secrets of the `parley up` running on it (from DIR/run.json).
    Without: `Settings()` from the environment.
    """
    if data_dir is None:
        return Settings()
    dd = DataDir.at(data_dir)
    hint = f"start it with `parley up --data-dir {data_dir}`"
    try:
        info = read_run_info(dd)
    except (OSError, ValueError, KeyError) as e:
        raise NoPlatformError(f"cannot read {dd.run_file}: {e}") from None
    if info is None:
        raise NoPlatformError(f"no platform is running on {dd.root} ({hint})")
    if not pid_alive(info.pid):
        # run.json outlived a killed `parley up` (a clean stop removes it).
        raise NoPlatformError(f"the platform on {dd.root} is not running (pid {info.pid} is gone; {hint})")
    return settings_from_env(info.settings_env)
