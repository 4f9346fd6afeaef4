"""docker-compose.yml and the Kubernetes manifests, checked with maintained schema tools
(check-jsonschema's Compose Specification schema, kubernetes-validate's Kubernetes schemas),
and .env.example documenting every variable."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stillhouse.commands.config import render_env_example

ROOT = Path(__file__).resolve().parents[2]
# KEDA's kinds are checked against its own schemas (test_autoscaling.py).
NOT_CORE = {"kustomization.yaml", "master-autoscaling.yaml"}
K8S = sorted(p for p in (ROOT / "infra" / "k8s").glob("*.yaml") if p.name not in NOT_CORE)


def tool(name: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).with_name(name))
    assert Path(found).exists(), f"{name} is a dev dependency: pip install -e '.[dev]'"
    return found


def check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    command = [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def check_k8s(*paths: Path) -> subprocess.CompletedProcess[str]:
    command = [tool("kubernetes-validate"), "--strict", *map(str, paths)]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def test_compose_file_follows_the_compose_specification() -> None:
    result = check_compose(ROOT / "docker-compose.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_services_are_wired_as_documented() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for store in ("mysql", "memcached", "minio"):
        assert "healthcheck" in services[store], f"{store} has no health check"
    assert services["migrate"]["command"] == ["db", "upgrade"]
    for process in ("api", "master", "bot"):
        needs = services[process]["depends_on"]
        assert needs["migrate"]["condition"] == "service_completed_successfully"
    master = services["master"]
    assert "ports" not in master and "container_name" not in master, "--scale needs neither"
    assert services["bot"]["profiles"] == ["discord"]
    worker = services["worker"]
    assert worker["profiles"] == ["gpu"]
    [device] = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"]


def test_kubernetes_manifests_validate_strictly() -> None:
    assert {p.name for p in K8S} >= {"api.yaml", "master.yaml", "bot.yaml", "migrate-job.yaml"}
    result = check_k8s(*K8S)
    assert result.returncode == 0, result.stdout + result.stderr
    kustomized = yaml.safe_load((ROOT / "infra/k8s/kustomization.yaml").read_text())
    assert all((ROOT / "infra/k8s" / name).exists() for name in kustomized["resources"])


@pytest.mark.parametrize(
    ("broken", "check"),
    [
        ("services:\n  api:\n    image: x\n    ports: 8080\n", check_compose),
        (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n"
            "spec: {replicas: two, selector: {}, template: {}}\n",
            check_k8s,
        ),
    ],
)
def test_the_validators_catch_a_broken_file(broken: str, check, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "broken.yaml"
    path.write_text(broken)
    assert check(path).returncode != 0


def test_env_example_documents_every_variable() -> None:
    assert (ROOT / ".env.example").read_text().strip() == render_env_example().strip(), (
        "regenerate with `stillhouse config example > .env.example`"
    )
