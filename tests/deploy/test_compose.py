"""docker-compose.yml, the Dockerfile and the compose TOML agree with the connector's code.

Docker is not available on the build machines, so the files are parsed and checked here.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

import pytest
import yaml
from deploy_helpers import PROMETHEUS_DIR, ROOT, is_config_env

from connector.config import ENV_PREFIX, ServerSettings, load_settings

METRICS_PORT = ServerSettings().port

@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def ports_of(service: dict[str, Any]) -> set[tuple[int, int]]:
    out = set()
    for spec in service.get("ports", []):
        host, _, container = str(spec).rpartition(":")
        out.add((int(host), int(container)))
    return out


def test_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"kafka", "connector", "simulator", "prometheus", "grafana"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:4.1")
    assert services["connector"]["image"] == services["simulator"]["image"]  # same image, built once
    assert services["connector"]["build"] == services["simulator"]["build"] == "."
    assert services["connector"]["command"] == ["run", "--config", "/etc/cxone/connector.toml"]
    assert services["simulator"]["command"] == ["simulate", "--host", "0.0.0.0", "--port", "8700"]  # noqa: S104


def test_kafka_runs_in_kraft_mode(compose: dict[str, Any]) -> None:
    env = env_of(compose["services"]["kafka"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(env["KAFKA_NODE_ID"] + "@")
    assert len(env["CLUSTER_ID"]) == 22  # base64 of a 16-byte UUID
    assert "ZOOKEEPER" not in " ".join(env)
    init = compose["services"]["kafka-init"]["command"][0]
    topics = tomllib.loads((ROOT / "deploy/connector.compose.toml").read_text())["topics"]
    for name in topics.values():
        assert f"--topic {name} " in init
    assert re.search(r"--topic dnc\.numbers .*cleanup\.policy=compact", init)


def test_connector_env_names_are_real_config_keys(compose: dict[str, Any]) -> None:
    assert not is_config_env(f"{ENV_PREFIX}KAFKA__NO_SUCH_KEY")
    env = env_of(compose["services"]["connector"])
    overrides = [name for name in env if name.startswith(ENV_PREFIX)]
    assert overrides
    for name in overrides:
        assert is_config_env(name), f"{name} is not a configuration key"


def test_metrics_port_matches_the_code(compose: dict[str, Any]) -> None:
    connector = compose["services"]["connector"]
    env = env_of(connector)
    assert int(env.get(f"{ENV_PREFIX}SERVER__PORT", METRICS_PORT)) == METRICS_PORT
    assert (METRICS_PORT, METRICS_PORT) in ports_of(connector)
    assert f"127.0.0.1:{METRICS_PORT}/healthz" in " ".join(connector["healthcheck"]["test"])
    prometheus = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    job = next(j for j in prometheus["scrape_configs"] if j["job_name"] == "cxone-connector")
    assert job["static_configs"][0]["targets"] == [f"connector:{METRICS_PORT}"]
    assert (8700, 8700) in ports_of(compose["services"]["simulator"])
    assert (9090, 9090) in ports_of(compose["services"]["prometheus"])
    assert (3000, 3000) in ports_of(compose["services"]["grafana"])


def test_compose_toml_loads_with_the_compose_environment(compose: dict[str, Any]) -> None:
    env = env_of(compose["services"]["connector"])
    data = tomllib.loads((ROOT / "deploy/connector.compose.toml").read_text())
    settings = load_settings(data, env)  # raises ConfigError listing any problem
    assert settings.server.port == METRICS_PORT
    assert settings.kafka.bootstrap_servers == "kafka:19092"
    assert settings.cxone.base_url == "http://simulator:8700"
    assert settings.cxone.client_secret is not None
    assert settings.cxone.client_secret.source == "env:CXONE_CLIENT_SECRET"
    mounts = compose["services"]["connector"]["volumes"]
    assert "./deploy/connector.compose.toml:/etc/cxone/connector.toml:ro" in mounts


def test_prometheus_and_grafana_mount_the_shipped_config(compose: dict[str, Any]) -> None:
    assert "./deploy/prometheus:/etc/prometheus:ro" in compose["services"]["prometheus"]["volumes"]
    grafana = compose["services"]["grafana"]["volumes"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana
    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana
    for mount in [*grafana, *compose["services"]["prometheus"]["volumes"]]:
        assert (ROOT / mount.split(":")[0]).exists(), mount


def test_dockerfile() -> None:
    text = (ROOT / "Dockerfile").read_text()
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert froms and all(f == "python:3.11-slim" for f in froms)
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert 'ENTRYPOINT ["cxone-connector"]' in text
    assert str(METRICS_PORT) in re.search(r"^EXPOSE (.+)$", text, re.M).group(1)  # type: ignore[union-attr]
    # the image reads schemas from CXONE_CONNECTOR_SCHEMA_DIR (see connector/serde/codec.py)
    assert "CXONE_CONNECTOR_SCHEMA_DIR=/opt/cxone/schemas" in text
    assert "COPY schemas /opt/cxone/schemas" in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    for needed in ("connector", "schemas", "pyproject.toml", "setup.py", "README.md"):
        assert needed not in ignored
    # the build stage compiles the Avro reader's C extension: every file it needs is copied
    build = text.split("\nFROM ")[1]
    assert "gcc" in build and "COPY pyproject.toml setup.py" in build
