"""The Kubernetes manifests give each pod a writable volume for the DNC snapshot directory."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import yaml

from connector.config import load_settings

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"


def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((K8S / name).read_text())
    return doc


def test_the_state_dir_is_on_a_writable_volume_of_its_own_with_a_size_limit() -> None:
    toml = tomllib.loads(load("configmap.yaml")["data"]["connector.toml"])
    state_dir = load_settings(toml, {"CXONE_CLIENT_SECRET": "x", "CXONE_WEBHOOK_SECRET": "x"}).dnc.state_dir
    assert state_dir.startswith("/")
    pod = load("deployment.yaml")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True  # so it must be a volume
    mounts = [m for m in container["volumeMounts"] if state_dir.startswith(m["mountPath"].rstrip("/") + "/")]
    assert len(mounts) == 1 and not mounts[0].get("readOnly", False)
    volume = next(v for v in pod["volumes"] if v["name"] == mounts[0]["name"])
    assert volume["emptyDir"]["sizeLimit"] == "2Gi"
