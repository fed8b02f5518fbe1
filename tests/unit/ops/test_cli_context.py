"""Which servers an operator command reaches: --data-dir, then the environment, then ./.parley."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from api.cli.context import NoPlatformError, resolve_settings
from infra.localstack.datadir import DataDir
from infra.localstack.runfile import RunInfo, write_run_info

SERVER_VARS = ("PARLEY_KAFKA_BOOTSTRAP", "PARLEY_MONGO_URL", "PARLEY_DATA_DIR")


@pytest.fixture(autouse=True)
def no_servers_in_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in SERVER_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def running_platform(root: Path, kafka: str, pid: int | None = None) -> None:
    """A run.json as a running `parley up` writes it (this test process stands for its pid)."""
    env = {"PARLEY_KAFKA_BOOTSTRAP": kafka, "PARLEY_MONGO_URL": f"mongodb://{kafka}", "PARLEY_DATA_DIR": str(root)}
    root.mkdir(parents=True, exist_ok=True)
    info = RunInfo(pid=os.getpid() if pid is None else pid, settings_env=env, gateway_url="http://127.0.0.1:1")
    write_run_info(DataDir.at(root), info)


def test_a_running_platform_in_dot_parley_is_the_default(tmp_path: Path) -> None:
    running_platform(tmp_path / ".parley", "dot-parley:9092")
    chosen = resolve_settings(None)
    assert chosen.settings.kafka_bootstrap == "dot-parley:9092"
    assert "default data dir" in chosen.source and str(tmp_path / ".parley") in chosen.source


def test_the_default_data_dir_follows_parley_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    running_platform(tmp_path / "elsewhere", "elsewhere:9092")
    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path / "elsewhere"))
    assert resolve_settings(None).settings.kafka_bootstrap == "elsewhere:9092"


def test_an_explicit_data_dir_wins_over_the_environment_which_wins_over_dot_parley(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    running_platform(tmp_path / ".parley", "dot-parley:9092")
    running_platform(tmp_path / "chosen", "chosen:9092")
    monkeypatch.setenv("PARLEY_KAFKA_BOOTSTRAP", "env:9092")
    monkeypatch.setenv("PARLEY_MONGO_URL", "mongodb://env")
    assert resolve_settings(None).settings.kafka_bootstrap == "env:9092"
    assert resolve_settings(None).source == "the environment"
    assert resolve_settings(tmp_path / "chosen").settings.kafka_bootstrap == "chosen:9092"


def test_nothing_found_says_what_was_tried(tmp_path: Path) -> None:
    with pytest.raises(NoPlatformError) as none:
        resolve_settings(None)
    message = str(none.value)
    assert "no --data-dir given" in message and "PARLEY_KAFKA_BOOTSTRAP and PARLEY_MONGO_URL not set" in message
    assert f"no platform is running on {tmp_path / '.parley'}" in message
    dead = subprocess.Popen(["true"])
    dead.wait()
    running_platform(tmp_path / ".parley", "gone:9092", pid=dead.pid)  # left behind by a killed `parley up`
    with pytest.raises(NoPlatformError, match=f"pid {dead.pid} is gone"):
        resolve_settings(None)


def test_a_half_configured_environment_is_not_completed_from_dot_parley(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    running_platform(tmp_path / ".parley", "dot-parley:9092")
    monkeypatch.setenv("PARLEY_KAFKA_BOOTSTRAP", "env:9092")
    with pytest.raises(NoPlatformError, match="not PARLEY_MONGO_URL"):
        resolve_settings(None)
    assert resolve_settings(None, ["kafka_bootstrap"]).settings.kafka_bootstrap == "env:9092"


def test_an_explicit_data_dir_without_a_platform_is_an_error(tmp_path: Path) -> None:
    running_platform(tmp_path / ".parley", "dot-parley:9092")
    with pytest.raises(NoPlatformError, match=r"no platform is running on .*start it with `parley up --data-dir"):
        resolve_settings(tmp_path / "empty")
