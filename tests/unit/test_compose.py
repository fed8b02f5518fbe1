"""docker-compose.yml, the Dockerfile and the observability files: the production shape, checked without an engine.

No Docker runs here, so this checks what can be checked from the files: the compose file against the
Compose Specification's JSON schema (vendored: tests/fixtures/compose-spec/SOURCE.md), after the
interpolation `docker compose` does; and what each image needs, as its documentation says (see the
comments in docker-compose.yml).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import ValidationError

from api.metrics import GatewayMetrics
from infra.settings import PLACEHOLDER_SECRETS, Settings
from infra.worker_metrics import WorkerMetrics, series_names

ROOT = Path(__file__).parents[2]
SCHEMA_DIR = ROOT / "tests" / "fixtures" / "compose-spec"
OBSERVABILITY = ROOT / "infra" / "observability"
KAFKA_SERVICES = ("kafka-1", "kafka-2", "kafka-3")
SECRET_KEY = re.compile(r"PASSWORD|SECRET|_KEY$|TOKEN")


# Compose's interpolation (compose spec, "Interpolation") ----------------------------------------
_REFERENCE = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?$", re.DOTALL)


class MissingVariable(Exception):
    """What `docker compose` stops with for ``${VAR:?message}``."""


def _substitute(text: str, env: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        if match["named"]:
            return env.get(match["named"], "")
        parsed = _BRACED.match(match["braced"])
        assert parsed, f"invalid interpolation ${{{match['braced']}}}"
        name, op, arg = parsed["name"], parsed["op"], parsed["arg"] or ""
        value = env.get(name)
        unset_or_empty = not value if op and op.startswith(":") else value is None
        if op in (":-", "-"):
            return arg if unset_or_empty else str(value)
        if op in (":?", "?"):
            if unset_or_empty:
                raise MissingVariable(f"required variable {name} is missing a value: {arg}")
            return str(value)
        if op in (":+", "+"):
            return "" if unset_or_empty else arg
        return value or ""

    return _REFERENCE.sub(one, text)


def interpolate(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return _substitute(node, env)
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(item, env) for item in node]
    return node


def referenced_variables(node: Any) -> set[str]:
    if isinstance(node, str):
        out = set()
        for match in _REFERENCE.finditer(node):
            if match["named"]:
                out.add(match["named"])
            elif match["braced"]:
                parsed = _BRACED.match(match["braced"])
                assert parsed
                out.add(parsed["name"])
        return out
    if isinstance(node, dict):
        return set().union(*(referenced_variables(v) for v in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(referenced_variables(v) for v in node)) if node else set()
    return set()


# The files ----------------------------------------------------------------------------------------
def raw_compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # resolves anchors and << merges
    assert isinstance(data, dict)
    return data


def env_example() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f".env.example: not KEY=VALUE: {line!r}"
            out[key.strip()] = value.strip()
    return out


def optional_in_env_example() -> set[str]:
    """Variables .env.example shows commented out (`# NAME=example`): compose has a default for each."""
    return set(re.findall(r"^# ([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), flags=re.M))


def filled_env(**overrides: str) -> dict[str, str]:
    """A .env as an operator fills it in: every variable of .env.example, with a real-looking value."""
    env = {key: hashlib.sha256(key.encode()).hexdigest()[:32] for key in env_example()}
    # The master key is 32 bytes in urlsafe base64, as .env.example says to generate it.
    env["PARLEY_MASTER_KEY"] = base64.urlsafe_b64encode(hashlib.sha256(b"master").digest()).decode().rstrip("=")
    env.update(overrides)
    return env


def compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    data = interpolate(raw_compose(), filled_env() if env is None else env)
    assert isinstance(data, dict)
    return data


def services() -> dict[str, Any]:
    result: dict[str, Any] = compose()["services"]
    return result


def schema_validator() -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMA_DIR / "compose-spec.json").read_text())
    checker = jsonschema.FormatChecker()

    @checker.checks("duration")
    def _duration(value: object) -> bool:  # compose-go's one custom format (Go's time.ParseDuration)
        return not isinstance(value, str) or re.fullmatch(r"([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+", value) is not None

    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator: jsonschema.protocols.Validator = cls(schema, format_checker=checker)
    return validator


def schema_errors(document: dict[str, Any]) -> list[str]:
    return sorted(
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in schema_validator().iter_errors(document)
    )


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    out: list[tuple[str, str]] = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, args = line.partition(" ")
            out.append((instruction.upper(), " ".join(args.split())))
    return out


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in dockerfile():
        if instruction == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", args)))
    return env


def volume_mounts(service: dict[str, Any]) -> dict[str, str]:
    """target -> source of a service's short-form volume mounts."""
    out: dict[str, str] = {}
    for spec in service.get("volumes", []):
        source, target, *_ = spec.split(":")
        out[target] = source
    return out


def parley_services() -> dict[str, Any]:
    return {name: s for name, s in services().items() if str(s.get("image", "")).startswith("parley:")}


# The schema ---------------------------------------------------------------------------------------
def test_the_vendored_schema_is_the_one_its_source_note_names() -> None:
    note = (SCHEMA_DIR / "SOURCE.md").read_text()
    declared = re.search(r"sha256 of `compose-spec.json`: `([0-9a-f]{64})`", note)
    assert declared, "SOURCE.md must state the file's sha256"
    assert hashlib.sha256((SCHEMA_DIR / "compose-spec.json").read_bytes()).hexdigest() == declared[1]
    assert "compose-go/v2" in note and "v2.16.2" in note


def test_the_compose_file_is_valid_against_the_compose_specification() -> None:
    assert schema_errors(compose()) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["services"]["redis"].update(healthchek={"test": ["CMD", "true"]}), "healthchek"),
        (lambda d: d["services"]["provision"]["depends_on"]["redis"].update(condition="service_up"), "service_up"),
        (lambda d: d["services"]["gateway-1"].update(ports="8001:8000"), "is not of type 'array'"),
        (lambda d: d.update(servics={}), "servics"),
    ],
    ids=["misspelt-key", "unknown-condition", "ports-not-a-list", "unknown-top-level-key"],
)
def test_the_schema_check_catches_a_broken_file(change: Any, expected: str) -> None:
    broken = copy.deepcopy(compose())
    change(broken)
    errors = schema_errors(broken)
    assert errors and any(expected in e for e in errors), errors


# Variables and secrets ----------------------------------------------------------------------------
def test_every_variable_the_file_reads_is_documented_in_env_example() -> None:
    required, optional = set(env_example()), optional_in_env_example()
    documented = required | optional
    used = referenced_variables(raw_compose())
    assert used == documented, f"undocumented: {used - documented}; documented but unused: {documented - used}"
    text = (ROOT / ".env.example").read_text()
    for name in required:  # each has a comment right above it
        assert re.search(rf"#[^\n]*\n{name}=", text), f"{name} has no explanation in .env.example"
    compose_text = (ROOT / "docker-compose.yml").read_text()
    for name in optional:  # a comment above it too, and compose's default
        assert re.search(rf"#[^\n]*\n# {name}=", text), f"{name} has no explanation in .env.example"
        assert re.search(rf"\$\{{{name}:-[^}}]+\}}", compose_text), f"{name} has no default in docker-compose.yml"


def test_env_example_ships_no_values() -> None:
    assert all(value == "" for value in env_example().values()), "a value in .env.example would be a known secret"


@pytest.mark.parametrize("name", sorted(env_example()))
def test_compose_refuses_to_start_without_each_variable(name: str) -> None:
    with pytest.raises(MissingVariable, match=name):
        compose(filled_env(**{name: ""}))


def test_no_secret_is_written_in_the_compose_file() -> None:
    for name, service in raw_compose()["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_KEY.search(key):
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", str(value)), f"{name}: {key} must come from .env"
            assert str(value).lower() not in PLACEHOLDER_SECRETS - {""}, f"{name}: {key} is a placeholder"


def test_minio_password_and_parley_secret_key_are_one_value_that_both_accept() -> None:
    env = services()["gateway-1"]["environment"]
    minio = services()["minio"]["environment"]
    assert env["PARLEY_S3_ACCESS_KEY"] == minio["MINIO_ROOT_USER"]
    assert env["PARLEY_S3_SECRET_KEY"] == minio["MINIO_ROOT_PASSWORD"]
    # MinIO accepts 8 characters, Parley 16: .env.example says 16, and Parley refuses 15.
    example = (ROOT / ".env.example").read_text()
    assert re.search(r"#[^\n]*16[^\n]*\nMINIO_ROOT_PASSWORD=", example)
    short = compose(filled_env(MINIO_ROOT_PASSWORD="x" * 15))["services"]["worker-1"]["environment"]
    with pytest.raises(ValidationError, match="PARLEY_S3_SECRET_KEY"):
        _settings(short)


def _settings(env: dict[str, Any]) -> Settings:
    return Settings.model_validate(
        {k.removeprefix("PARLEY_").lower(): v for k, v in env.items() if k.startswith("PARLEY_")}
    )


def test_every_setting_compose_passes_exists() -> None:
    fields = {f"PARLEY_{name.upper()}" for name in Settings.model_fields}
    for name, service in services().items():
        for key in service.get("environment") or {}:
            if key.startswith("PARLEY_"):
                assert key in fields, f"{name} passes {key}, which Settings does not have"


def test_every_parley_service_gets_settings_that_validate_as_production() -> None:
    for name, service in parley_services().items():
        settings = _settings(service["environment"])
        assert settings.environment == "production", name
        assert settings.partitions == 12 and settings.replication_factor == 3, name


# Kafka (apache/kafka) -----------------------------------------------------------------------------
def test_kraft_cluster_id_is_one_22_character_base64_uuid() -> None:
    ids = {services()[name]["environment"]["CLUSTER_ID"] for name in KAFKA_SERVICES}
    assert len(ids) == 1, "every node of one cluster has the same CLUSTER_ID"
    (cluster_id,) = ids
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id) and not cluster_id.startswith("-")
    raw = base64.urlsafe_b64decode(cluster_id + "==")
    assert len(raw) == 16 and base64.urlsafe_b64encode(raw).decode().rstrip("=") == cluster_id


def test_kraft_quorum_names_every_node_once() -> None:
    voters: set[str] = set()
    node_ids: set[str] = set()
    for name in KAFKA_SERVICES:
        env = services()[name]["environment"]
        assert {"broker", "controller"} <= set(env["KAFKA_PROCESS_ROLES"].split(","))
        voters.add(env["KAFKA_CONTROLLER_QUORUM_VOTERS"])
        node_ids.add(env["KAFKA_NODE_ID"])
        assert f"{env['KAFKA_NODE_ID']}@{name}:9093" in env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
    assert len(voters) == 1 and len(node_ids) == len(KAFKA_SERVICES)


def test_kafka_log_dirs_are_on_named_volumes() -> None:
    declared = set(compose()["volumes"])
    sources = []
    for name in KAFKA_SERVICES:
        service = services()[name]
        mounts = volume_mounts(service)
        for log_dir in service["environment"]["KAFKA_LOG_DIRS"].split(","):
            target = next((t for t in mounts if log_dir == t or log_dir.startswith(t.rstrip("/") + "/")), None)
            assert target is not None, f"{name}: log dir {log_dir} is not on a volume (lost with the container)"
            assert mounts[target] in declared, f"{name}: {mounts[target]} is not a named volume"
            sources.append(mounts[target])
    assert len(set(sources)) == len(sources), "each broker has a volume of its own"


def test_kafka_image_is_the_local_brokers_release() -> None:
    pom = (ROOT / "infra" / "localstack" / "kafka" / "pom.xml").read_text()
    local = re.search(r"<kafka.version>([0-9.]+)</kafka.version>", pom)
    assert local
    images = {services()[name]["image"] for name in KAFKA_SERVICES}
    assert images == {f"apache/kafka:{local[1]}"}


# The Parley image (Dockerfile) --------------------------------------------------------------------
def test_the_image_user_owns_its_data_dir() -> None:
    data_dir = dockerfile_env()["PARLEY_DATA_DIR"]
    users = [args for instruction, args in dockerfile() if instruction == "USER"]
    assert users, "the image must not run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    runs = " && ".join(args for instruction, args in dockerfile() if instruction == "RUN")
    assert re.search(rf"useradd [^&]*\b{user}\b", runs), f"user {user} is never created"
    assert re.search(rf"mkdir -p [^&]*{re.escape(data_dir)}\b", runs), f"{data_dir} is never created"
    assert re.search(rf"chown (-R )?{user}(:\w+)? [^&]*{re.escape(data_dir)}\b", runs), (
        f"{data_dir} not owned by {user}"
    )
    volumes = [args for instruction, args in dockerfile() if instruction == "VOLUME"]
    assert any(data_dir in v for v in volumes)


def test_workers_keep_their_tables_on_a_volume_of_their_own() -> None:
    data_dir = dockerfile_env()["PARLEY_DATA_DIR"]
    sources = []
    for name in ("worker-1", "worker-2"):
        service = services()[name]
        assert "PARLEY_DATA_DIR" not in service["environment"]  # the image's, which it owns
        mounts = volume_mounts(service)
        assert data_dir in mounts and mounts[data_dir] in compose()["volumes"], name
        sources.append(mounts[data_dir])
    assert len(set(sources)) == 2


def test_own_image_tag_is_the_project_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name, service in parley_services().items():
        assert service["image"] == f"parley:{version}", name
        assert service["build"] == ".", name


# Shape, images, health ----------------------------------------------------------------------------
def test_two_gateways_and_two_workers_in_one_consumer_group() -> None:
    s = services()
    workers = [n for n, v in parley_services().items() if v.get("command") == ["worker"]]
    gateways = [n for n, v in parley_services().items() if v.get("command", [None])[0] == "gateway"]
    assert sorted(workers) == ["worker-1", "worker-2"] and sorted(gateways) == ["gateway-1", "gateway-2"]
    groups = {s[n]["environment"].get("PARLEY_WORKER_ID", Settings.model_fields["worker_id"].default) for n in workers}
    assert len(groups) == 1
    assert {s[n]["environment"]["PARLEY_INSTANCE_ID"] for n in workers + gateways} == set(workers + gateways)
    assert {f"mongo-{i}" for i in (1, 2, 3)} | {"redis", "elasticsearch", "minio", "prometheus", "grafana"} <= set(s)


def test_every_image_is_pinned_to_a_release() -> None:
    for name, service in services().items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert re.fullmatch(r"v?\d+\.\d+\.\d+|RELEASE\.[0-9TZ-]+", tag), f"{name}: {image} is not a pinned release"


def one_shot(service: dict[str, Any]) -> bool:
    return service.get("restart") == "no"


def test_every_long_running_service_has_a_health_check() -> None:
    for name, service in services().items():
        if one_shot(service):
            assert "healthcheck" not in service, f"{name} runs once: it is waited on by its exit code"
            continue
        check = service.get("healthcheck")
        assert check, f"{name} has no health check"
        assert check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) > 1, name
        assert {"interval", "timeout", "retries"} <= check.keys(), name


def test_depends_on_waits_for_health_or_completion() -> None:
    s = services()
    for name, service in s.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on must name a condition for each service"
        for target, spec in depends.items():
            assert target in s, f"{name} depends on an unknown service {target}"
            condition = spec["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in s[target], f"{name} waits for {target} to be healthy, which it never is"
            elif condition == "service_completed_successfully":
                assert one_shot(s[target]), f"{name} waits for {target} to exit, but it restarts"
            else:
                pytest.fail(f"{name} -> {target}: {condition} does not wait for readiness")
    for name, service in parley_services().items():
        if name != "provision":
            assert service["depends_on"] == {"provision": {"condition": "service_completed_successfully"}}, name
    assert set(s["provision"]["depends_on"]) == {*KAFKA_SERVICES, "mongo-init", "redis", "elasticsearch", "minio"}


# Observability ------------------------------------------------------------------------------------
def test_prometheus_scrapes_every_gateway_and_worker_where_they_listen() -> None:
    config = yaml.safe_load((OBSERVABILITY / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: {t for static in job["static_configs"] for t in static["targets"]}
        for job in config["scrape_configs"]
    }
    commands = {name: v.get("command", [""]) for name, v in parley_services().items()}
    env = {name: v["environment"] for name, v in parley_services().items()}
    gateways = {f"{n}:{c[c.index('--port') + 1]}" for n, c in commands.items() if c[0] == "gateway"}
    workers = {f"{n}:{env[n]['PARLEY_WORKER_METRICS_PORT']}" for n, c in commands.items() if c == ["worker"]}
    assert targets["parley-gateway"] == gateways
    assert targets["parley-worker"] == workers
    mounts = volume_mounts(services()["prometheus"])
    assert mounts["/etc/prometheus/prometheus.yml"] == "./infra/observability/prometheus.yml"


def dashboard() -> dict[str, Any]:
    data = json.loads((OBSERVABILITY / "grafana" / "dashboards" / "parley.json").read_text())
    assert isinstance(data, dict)
    return data


def test_every_metric_name_in_the_dashboard_exists_in_the_code() -> None:
    known = series_names(WorkerMetrics().registry) | series_names(GatewayMetrics().registry)
    used: set[str] = set()
    panels = [p for p in dashboard()["panels"] if p["type"] != "row"]
    assert panels
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used |= set(re.findall(r"\b(?:parley|process|python)_[a-z0-9_]+\b", target["expr"]))
    assert used - known == set()
    # Every worker series the issue asks for is on the dashboard.
    for name in (
        "parley_worker_projection_lag_records",
        "parley_worker_decide_batch_size_bucket",
        "parley_worker_decide_batch_seconds_bucket",
        "parley_worker_project_batch_size_bucket",
        "parley_worker_project_batch_seconds_bucket",
        "parley_worker_dead_letters_total",
        "parley_worker_rebalances_total",
        "process_resident_memory_bytes",
    ):
        assert name in used, name


def test_the_dashboard_and_its_data_source_are_provisioned_where_compose_mounts_them() -> None:
    provisioning = OBSERVABILITY / "grafana" / "provisioning"
    source = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert source["url"] == "http://prometheus:9090" and source["type"] == "prometheus"
    uids = {t["datasource"]["uid"] for p in dashboard()["panels"] if p["type"] != "row" for t in p["targets"]}
    assert uids == {source["uid"]}
    provider = yaml.safe_load((provisioning / "dashboards" / "parley.yml").read_text())["providers"][0]
    mounts = volume_mounts(services()["grafana"])
    assert mounts[provider["options"]["path"]] == "./infra/observability/grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./infra/observability/grafana/provisioning"


def test_clients_reach_both_gateways_through_one_balancer_port_only() -> None:
    s = services()
    gateways = sorted(n for n, v in parley_services().items() if v.get("command", [None])[0] == "gateway")
    assert all("ports" not in s[n] for n in gateways), "a published gateway port would bypass the balancer"
    assert all(s[n]["environment"]["FORWARDED_ALLOW_IPS"] == "*" for n in gateways)
    balancer = s["balancer"]
    assert balancer["ports"] == ["8000:8000"]
    assert set(balancer["depends_on"]) == set(gateways)
    mount = next(v for v in balancer["volumes"] if v.endswith(":/etc/nginx/nginx.conf:ro"))
    conf = (ROOT / mount.split(":")[0]).read_text()
    upstream = re.search(r"upstream gateways \{(.*?)\}", conf, re.DOTALL)
    assert upstream is not None
    assert "ip_hash;" in upstream[1], "long-polling sessions need a client to stick to one gateway"
    assert re.findall(r"server (\S+):8000", upstream[1]) == gateways
    assert "proxy_set_header Upgrade $http_upgrade;" in conf  # WebSockets pass through
