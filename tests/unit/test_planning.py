"""`stillhouse plan`: the seed-003 case, docs/sizing.md's queueing figures, and the command
line (the built-in GPU table, a table of one's own, refusals in words)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from stillhouse.cli import cli
from stillhouse.planning import (
    DB_CEILING_WRITES_PER_S,
    WORKER_OVERHEAD,
    WRITES_PER_REQUEST,
    Load,
    erlang_c,
    plan,
)


def test_seed_003s_hundred_million_users_need_thousands_of_gpus_not_61() -> None:
    load = Load(daily_users=100e6, requests_per_user=10, peak_factor=1)
    result = plan(load)
    assert round(result.requests_per_s) == 11_574  # the seed's TRPS
    gpu_s = (20 / 45 + 0.05) * (1 + WORKER_OVERHEAD)  # SD 1.5 512², 20 steps, H100
    assert result.gpu_s_per_request == pytest.approx(gpu_s)
    assert result.gpus_peak == math.ceil(result.requests_per_s * gpu_s / 0.8)
    assert 7_000 < result.gpus_peak < 7_500  # against the seed's 61
    assert result.databases == math.ceil(11_574.07 * WRITES_PER_REQUEST / DB_CEILING_WRITES_PER_S)
    assert result.storage_tb == pytest.approx(1e9 * 400_000 * 30 / 1e12)  # 12 PB for 30 days
    assert result.gpu_cost_month == pytest.approx(
        result.requests_per_s * gpu_s * 86_400 * 30 * 0.00116
    )


def test_erlang_c_gives_the_sizing_tables_waits() -> None:
    # docs/sizing.md: 120 jobs/min of 2 GPU-seconds on 5 workers: 55 % wait, 1.1 s mean.
    waiting = erlang_c(5, 4.0)
    assert waiting == pytest.approx(0.5541, abs=1e-4)
    assert waiting * 2 / (5 - 4) == pytest.approx(1.1, abs=0.01)
    assert erlang_c(42, 1000 / 60 * 2) == pytest.approx(0.10, abs=0.01)  # 1,000 jobs/min
    assert erlang_c(3, 3.0) == 1.0  # saturated: everyone waits
    assert erlang_c(10, 0.0) == 0.0


def test_a_peak_and_a_mix_of_models_raise_the_gpu_count() -> None:
    flat = plan(Load(daily_users=50_000, requests_per_user=4, peak_factor=1))
    mixed = plan(
        Load(
            daily_users=50_000,
            requests_per_user=4,
            peak_factor=3,
            mix=[
                {"model": "sd15-512", "steps": 20, "share": 1},
                {"model": "sdxl-1024", "steps": 30, "share": 1},
            ],
        )
    )
    assert mixed.gpu_s_per_request > flat.gpu_s_per_request
    assert mixed.gpus_peak > flat.gpus_peak
    assert mixed.masters >= 2 and mixed.bot_shards == 1


def test_the_command_prints_the_plan_and_its_json() -> None:
    runner = CliRunner()
    text = runner.invoke(
        cli, ["plan", "--daily-users", "1e8", "--requests", "10", "--peak-factor", "1"]
    )
    assert text.exit_code == 0, text.output
    assert "= 11,574.1 requests/s on average" in text.output
    assert "GPUs at the peak: 7,233" in text.output
    data = runner.invoke(cli, ["plan", "--daily-users", "1e8", "--requests", "10", "--json"])
    assert data.exit_code == 0
    parsed = json.loads(data.output)
    assert parsed["plan"]["peak_requests_per_s"] == pytest.approx(3 * 11_574.07, rel=1e-4)


def test_a_gpu_table_of_ones_own_replaces_the_built_in_one(tmp_path: Path) -> None:
    table = tmp_path / "gpus.toml"
    table.write_text(
        "[models.sd15-512]\nfixed_s = 0.0\nimage_bytes = 500000\n\n"
        "[gpus.mine]\nmemory_gb = 24\nflex_per_s = 0.001\nactive_per_s = 0.0008\n"
        'it_per_s = { "sd15-512" = 20.0 }\n'
    )
    done = CliRunner().invoke(
        cli,
        [
            "plan",
            "--daily-users",
            "86400",
            "--requests",
            "1",
            "--peak-factor",
            "1",
            "--gpu",
            "mine",
            "--gpu-table",
            str(table),
            "--json",
        ],
    )
    assert done.exit_code == 0, done.output
    result = json.loads(done.output)["plan"]
    assert result["gpu_s_per_request"] == pytest.approx(1.0 * (1 + WORKER_OVERHEAD))
    assert result["gpus_peak"] == 2  # 1.01 busy at 80 %


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--gpu", "B200"], "no GPU 'B200' in the table (known: H200 PRO, H100 PRO"),
        (["--mix", "sd15-512:20"], "expected model:steps:share, got 'sd15-512:20'"),
        (["--mix", "sd3-1024:28:1"], "no model 'sd3-1024' in the table"),
        (["--gpu", "A4000", "--mix", "flux-1024:20:1"], "A4000 has no speed for flux-1024"),
    ],
)
def test_what_the_planner_cannot_plan_is_said_in_words(args: list[str], said: str) -> None:
    done = CliRunner().invoke(cli, ["plan", "--daily-users", "1000", "--requests", "1", *args])
    assert done.exit_code == 2
    assert said in done.output
