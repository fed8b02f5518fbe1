"""docker-compose.yml is the production shape; no engine runs here, so check what can be checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from infra.settings import Settings

ROOT = Path(__file__).parents[2]


def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_compose_has_the_production_shape() -> None:
    services = compose()["services"]
    assert {f"kafka-{i}" for i in (1, 2, 3)} <= services.keys()
    assert {f"mongo-{i}" for i in (1, 2, 3)} <= services.keys()
    assert {"redis", "elasticsearch", "minio", "gateway-1", "gateway-2", "worker-1", "worker-2"} <= services.keys()
    for i in (1, 2, 3):
        env = services[f"kafka-{i}"]["environment"]
        assert "controller" in env["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    checked = [f"kafka-{i}" for i in (1, 2, 3)] + [f"mongo-{i}" for i in (1, 2, 3)]
    checked += ["redis", "elasticsearch", "minio", "gateway-1", "gateway-2"]
    for name in checked:
        assert "healthcheck" in services[name], name


def test_every_setting_compose_passes_exists() -> None:
    fields = {f"PARLEY_{name.upper()}" for name in Settings.model_fields}
    for name, service in compose()["services"].items():
        for key in service.get("environment") or {}:
            if key.startswith("PARLEY_"):
                assert key in fields, f"{name} passes {key}, which Settings does not have"


def test_compose_settings_validate_as_production() -> None:
    env = compose()["services"]["gateway-1"]["environment"]
    values = {
        k.removeprefix("PARLEY_").lower(): ("x" * 32 if str(v).startswith("${") else v)
        for k, v in env.items()
        if k.startswith("PARLEY_")
    }
    settings = Settings.model_validate(values)
    assert settings.environment == "production" and settings.partitions == 12
