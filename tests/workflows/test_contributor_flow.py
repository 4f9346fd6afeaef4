"""A contributor adds a workflow with no code: a graph and a manifest in the folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from bot.choices import MAX_CHOICES, workflow_choices
from stillhouse.workflows.loader import WorkflowCatalog
from tests.workflows.captures import CAPTURES

ROOT = Path(__file__).resolve().parents[2]

MANIFEST = """
title = "Tiny test renders"
description = "64 px, one step: for smoke tests."
outputs = ["9"]

[[models]]
folder = "checkpoints"
file = "rand-sd15.safetensors"

[parameters.prompt]
type = "string"
required = true
bind = "6.text"

[parameters.seed]
type = "seed"
bind = "3.seed"

[presets.fast]
[presets.quality]
"""


def stillhouse(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STILLHOUSE_")}
    return subprocess.run(
        [sys.executable, "-m", "stillhouse", "workflows", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**env, "STILLHOUSE_WORKFLOWS__DIR": str(folder)},
    )


def test_a_dropped_in_workflow_is_listed_checked_and_offered_by_the_bot(tmp_path: Path) -> None:
    folder = tmp_path / "workflows"  # an operator's own, beside the shipped ones
    folder.mkdir()
    shutil.copy(CAPTURES / "workflows" / "txt2img_64_s1.json", folder / "tiny-smoke.json")
    (folder / "tiny-smoke.toml").write_text(MANIFEST)

    listed = stillhouse(folder, "list")
    assert listed.returncode == 0 and "tiny-smoke" in listed.stdout
    assert "Tiny test renders" in listed.stdout

    checked = stillhouse(folder, "check", "tiny-smoke")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "ok      tiny-smoke" in checked.stdout

    rendered = stillhouse(
        folder, "render", "tiny-smoke", "--set", "prompt=a boat", "--set", "seed=5"
    )
    assert rendered.returncode == 0, rendered.stderr
    assert '"text":"a boat"' in rendered.stdout and '"seed":5' in rendered.stdout

    choices = workflow_choices(WorkflowCatalog.load(folder))
    assert ("Tiny test renders", "tiny-smoke") in [(c.name, c.value) for c in choices]
    assert [c.value for c in workflow_choices(WorkflowCatalog.load(folder), "tiny")] == [
        "tiny-smoke"
    ]


def test_the_bot_offers_generate_workflows_only_and_at_most_25() -> None:
    catalog = WorkflowCatalog.load()
    offered = {c.value for c in workflow_choices(catalog)}
    assert {"sd15-txt2img", "sdxl-txt2img", "flux-schnell-txt2img", "sd15-img2img"} <= offered
    assert "upscale-2x" not in offered and "sd15-variations" not in offered
    assert len(offered) <= MAX_CHOICES


def test_a_broken_workflow_is_reported_and_hides_nothing_else(tmp_path: Path) -> None:
    folder = tmp_path / "workflows"  # an operator's own, beside the shipped ones
    folder.mkdir()
    (folder / "typo.toml").write_text(MANIFEST.replace('type = "seed"', 'type = "sead"'))
    shutil.copy(CAPTURES / "workflows" / "txt2img_64_s1.json", folder / "typo.json")
    (folder / "half.toml").write_text(MANIFEST)  # no half.json beside it
    (folder / "wrong-input.toml").write_text(MANIFEST.replace('bind = "6.text"', 'bind = "6.txt"'))
    shutil.copy(CAPTURES / "workflows" / "txt2img_64_s1.json", folder / "wrong-input.json")

    result = stillhouse(folder, "check")
    assert result.returncode == 1
    out = result.stdout
    assert "typo.toml: parameters.seed.type: Input should be 'string'" in out
    assert "half.toml: graph file half.json not found" in out
    assert (
        "wrong-input: parameter prompt binds to 6.txt, but CLIPTextEncode has no input 'txt'" in out
    )
    assert "ok      sd15-txt2img" in out
