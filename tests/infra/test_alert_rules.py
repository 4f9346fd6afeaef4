"""infra/prometheus: the alert rules pass promtool's check and its unit tests
(alerts_test.yml), every alert names a runbook section that exists in
docs/operations.md, and every metric the rules use is one a process exports."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "infra" / "prometheus"
OPERATIONS = ROOT / "docs" / "operations.md"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        message = "promtool is missing (apt-get install prometheus)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """promtool ARGS in `cwd`; its exit status and output."""
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, check=False)


def alerts() -> list[dict[str, object]]:
    groups = yaml.safe_load((RULES / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_the_rules_pass_promtool_check() -> None:
    done = run_promtool("check", "rules", "alerts.yml", cwd=RULES)
    assert done.returncode == 0, done.stdout + done.stderr


def test_each_alert_fires_on_its_trouble_and_not_on_a_healthy_deployment() -> None:
    done = run_promtool("test", "rules", "alerts_test.yml", cwd=RULES)
    assert done.returncode == 0, done.stdout + done.stderr
    tested = set(re.findall(r"alertname: (\w+)", (RULES / "alerts_test.yml").read_text()))
    assert tested == {str(rule["alert"]) for rule in alerts()}


def test_every_alert_has_a_runbook_section() -> None:
    headings = {
        anchor(line.lstrip("#"))
        for line in OPERATIONS.read_text().splitlines()
        if line.startswith("#")
    }
    for rule in alerts():
        annotations = rule["annotations"]
        assert isinstance(annotations, dict)
        path, _, fragment = str(annotations["runbook_url"]).partition("#")
        assert path == "docs/operations.md"
        assert fragment in headings, f"{rule['alert']}: no section #{fragment}"


def test_the_rules_use_only_metrics_the_processes_export() -> None:
    from master.metrics import MasterMetrics
    from stillhouse.lock_metrics import count_degraded_locks
    from stillhouse.locks import InProcessLocks

    master = MasterMetrics()
    count_degraded_locks(master.registry, InProcessLocks())
    exported: set[str] = set()
    for family in master.registry.collect():
        exported.update(sample.name for sample in family.samples)
        exported.add(family.name + ("_total" if family.type == "counter" else ""))
        if family.type == "histogram":
            exported.add(family.name + "_bucket")
    used = set()
    for rule in alerts():
        used.update(re.findall(r"\b(stillhouse_[a-z_]+)", str(rule["expr"])))
    assert used and used <= exported, sorted(used - exported)
