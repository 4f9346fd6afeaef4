"""infra/k8s/master-autoscaling.yaml: KEDA's ScaledObject and TriggerAuthentication,
validated offline against KEDA's own CRD schemas (tests/fixtures/keda, taken from
kedacore/keda's config/crd/bases) with unknown fields refused, scaling the master
Deployment that master.yaml defines; and the scaler's query, run on the real schema,
counts the waiting jobs and nothing else."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from sqlalchemy import Engine, text

from stillhouse.config import QueueSettings
from stillhouse.queue import GenerationQueue
from tests.support import new_job

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "infra" / "k8s" / "master-autoscaling.yaml"
SCHEMAS = ROOT / "tests" / "fixtures" / "keda"


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The CRD schema with unknown fields refused, as the API server's strict field
    validation does (objects that keep unknown fields say so)."""
    schema = copy.deepcopy(schema)

    def close(node: Any) -> None:
        if isinstance(node, dict):
            keeps_unknown = node.get("x-kubernetes-preserve-unknown-fields")
            if "properties" in node and "additionalProperties" not in node and not keeps_unknown:
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(schema)
    schema["properties"]["metadata"] = {"type": "object"}
    return schema


def validate(document: dict[str, Any]) -> None:
    kind = document["kind"]
    assert document["apiVersion"] == "keda.sh/v1alpha1", kind
    schema = json.loads((SCHEMAS / f"{kind.lower()}.json").read_text())
    jsonschema.validate(document, strict(schema))


def manifest(kind: str) -> dict[str, Any]:
    [found] = [d for d in documents(MANIFEST) if d["kind"] == kind]
    return found


def test_the_keda_objects_follow_kedas_schemas() -> None:
    kinds = []
    for document in documents(MANIFEST):
        validate(document)
        kinds.append(document["kind"])
    assert sorted(kinds) == ["ScaledObject", "TriggerAuthentication"]


@pytest.mark.parametrize(
    "breakage",
    [
        lambda d: d["spec"].update(minReplicaCount="two"),
        lambda d: d["spec"].update(maxReplicas=20),  # the HPA's name, not KEDA's
        lambda d: d["spec"]["triggers"][0].pop("type"),
    ],
)
def test_the_schema_check_catches_a_broken_scaled_object(breakage: Any) -> None:
    broken = manifest("ScaledObject")
    breakage(broken)
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)


def test_it_scales_the_master_deployment_with_the_authentication_it_defines() -> None:
    scaled = manifest("ScaledObject")
    masters = [d for d in documents(ROOT / "infra/k8s/master.yaml") if d["kind"] == "Deployment"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == masters[0]["metadata"]["name"]
    assert not [d for d in documents(ROOT / "infra/k8s/master.yaml") if "Autoscaler" in d["kind"]]
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "mysql"
    assert (
        trigger["authenticationRef"]["name"]
        == manifest("TriggerAuthentication")["metadata"]["name"]
    )
    [secret_ref] = manifest("TriggerAuthentication")["spec"]["secretTargetRef"]
    assert secret_ref["parameter"] == "connectionString"
    secrets = documents(ROOT / "infra/k8s/secret.example.yaml")
    assert any(
        s["metadata"]["name"] == secret_ref["name"] and secret_ref["key"] in s["stringData"]
        for s in secrets
    )


def test_the_scalers_query_counts_the_waiting_jobs(mariadb_engine: Engine) -> None:
    queue = GenerationQueue(mariadb_engine, QueueSettings())
    for _ in range(5):
        queue.enqueue(new_job())
    queue.claim("m1", limit=2)  # held by a master: no longer waiting
    [trigger] = manifest("ScaledObject")["spec"]["triggers"]
    with mariadb_engine.connect() as conn:
        waiting = conn.execute(text(trigger["metadata"]["query"])).scalar_one()
    assert waiting == 3
    assert float(trigger["metadata"]["queryValue"]) > 0
