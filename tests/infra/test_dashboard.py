"""infra/grafana/stillhouse.json, linted: a well-formed dashboard (unique panel ids and
query ids, panels that do not overlap, the Prometheus datasource as a variable), every
query valid PromQL (promtool checks them as recording rules) and every metric a query
names one that a master or bot exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from tests.infra.test_alert_rules import run_promtool

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "infra" / "grafana" / "stillhouse.json"


def dashboard() -> dict[str, Any]:
    loaded = json.loads(DASHBOARD.read_text())
    assert isinstance(loaded, dict)
    return loaded


def queries() -> list[str]:
    return [target["expr"] for panel in dashboard()["panels"] for target in panel["targets"]]


def test_the_dashboard_is_well_formed() -> None:
    board = dashboard()
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 36
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = board["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        assert panel["title"] and panel["targets"], panel
        assert panel["datasource"]["uid"] == "${datasource}"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(set(refs)) == len(refs), panel["title"]
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    rules = {
        "groups": [
            {
                "name": "dashboard-lint",
                "rules": [
                    {"record": f"lint:query_{n}", "expr": e} for n, e in enumerate(queries())
                ],
            }
        ]
    }
    (tmp_path / "queries.yml").write_text(yaml.safe_dump(rules))
    done = run_promtool("check", "rules", "queries.yml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_metric_a_query_names_is_exported() -> None:
    from api.metrics import ApiMetrics
    from bot.metrics import BotMetrics
    from master.metrics import MasterMetrics
    from stillhouse.lock_metrics import count_degraded_locks
    from stillhouse.locks import InProcessLocks

    master, bot, api = MasterMetrics(), BotMetrics(), ApiMetrics()
    count_degraded_locks(master.registry, InProcessLocks())
    bot.watch_gateway(lambda: [(0, 0.05)])
    exported: set[str] = set()
    for registry in (master.registry, bot.registry, api.registry):
        for family in registry.collect():
            exported.add(family.name + ("_total" if family.type == "counter" else ""))
            exported.update(sample.name for sample in family.samples)
            if family.type == "histogram":
                exported.add(family.name + "_bucket")
    used = {m for e in queries() for m in re.findall(r"\b(stillhouse_[a-z_]+)", e)}
    assert len(used) >= 10 and used <= exported, sorted(used - exported)
