"""Kubernetes manifests parse, and their ports, probe paths and env names match the code."""

from __future__ import annotations

import re
import tomllib
from typing import Any

import pytest
import yaml
from confluent_kafka import Consumer
from deploy_helpers import ROOT, is_config_env

from connector.config import ENV_PREFIX, ServerSettings, load_settings

K8S = ROOT / "deploy" / "k8s"

def load(name: str) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    assert len(docs) == 1
    doc: dict[str, Any] = docs[0]
    return doc


@pytest.fixture(scope="module")
def deployment() -> dict[str, Any]:
    return load("deployment.yaml")


@pytest.fixture(scope="module")
def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    c: dict[str, Any] = containers[0]
    return c


@pytest.fixture(scope="module")
def config_toml() -> dict[str, Any]:
    return tomllib.loads(load("configmap.yaml")["data"]["connector.toml"])


def test_kustomization_lists_every_manifest_but_the_example_secret() -> None:
    kust = load("kustomization.yaml")
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert set(kust["resources"]) == files
    kinds = {load(f)["kind"] for f in files}
    assert kinds == {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "ServiceMonitor"}


def test_metrics_port_and_probes(container: dict[str, Any], config_toml: dict[str, Any]) -> None:
    port = ServerSettings().port
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": port}
    assert config_toml["server"]["port"] == port
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    # a slow probe must not kill a pod that is merely waiting: liveness tolerates more than stall_s
    live = container["livenessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] >= 30


def test_service_servicemonitor_and_pdb_select_the_pods(deployment: dict[str, Any]) -> None:
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    svc = load("service.yaml")
    assert svc["spec"]["selector"].items() <= labels.items()
    assert svc["spec"]["ports"] == [
        {"name": "metrics", "port": ServerSettings().port, "targetPort": "metrics", "protocol": "TCP"}
    ]
    monitor = load("servicemonitor.yaml")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    pdb = load("pdb.yaml")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1


def test_config_is_mounted_where_the_args_point(
    deployment: dict[str, Any], container: dict[str, Any]
) -> None:
    assert container["args"] == ["run", "--config", "/etc/cxone/connector.toml"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    assert mount["mountPath"] == "/etc/cxone"
    volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "config")
    assert volume["configMap"]["name"] == load("configmap.yaml")["metadata"]["name"]


def test_env_names_are_config_keys_or_referenced_secrets(
    container: dict[str, Any], config_toml: dict[str, Any]
) -> None:
    raw_toml = load("configmap.yaml")["data"]["connector.toml"]
    referenced = set(re.findall(r'"env:([A-Z0-9_]+)"', raw_toml))
    assert referenced == {"CXONE_CLIENT_SECRET", "CXONE_WEBHOOK_SECRET"}
    names = set()
    for var in container["env"]:
        name = var["name"]
        names.add(name)
        if name.startswith(ENV_PREFIX):
            assert is_config_env(name), f"{name} is not a configuration key"
        else:
            assert name in referenced, f"{name} is set but connector.toml never references it"
            assert var["valueFrom"]["secretKeyRef"]["name"] == "cxone-connector"
    assert referenced <= names, "a secret referenced in connector.toml is not provided"
    secret_keys = set(load("secret.example.yaml")["stringData"])
    used = {v["valueFrom"]["secretKeyRef"]["key"] for v in container["env"]
            if "secretKeyRef" in v.get("valueFrom", {})}
    assert used == secret_keys


def test_configmap_toml_loads_with_the_pod_environment(container: dict[str, Any],
                                                       config_toml: dict[str, Any]) -> None:
    env = {v["name"]: "dummy" for v in container["env"]}
    settings = load_settings(config_toml, env)  # raises ConfigError listing every problem
    assert settings.server.port == ServerSettings().port
    assert settings.kafka_common["sasl.username"] == "dummy"
    # pass-through keys must be real librdkafka properties: librdkafka rejects unknown ones
    conf = {"bootstrap.servers": "127.0.0.1:1", "group.id": "manifest-check", **settings.kafka_common}
    Consumer(conf).close()


def test_pod_runs_as_non_root_and_outlives_the_shutdown_deadline(
    deployment: dict[str, Any], container: dict[str, Any], config_toml: dict[str, Any]
) -> None:
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["terminationGracePeriodSeconds"] > config_toml["shutdown_deadline_s"]
