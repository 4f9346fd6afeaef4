"""`stillhouse up --install-comfy`: ComfyUI installed with comfy-cli into the data folder,
plus the models the default workflow declares. Needs the internet, and says so plainly
when there is none instead of failing halfway."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import click

from stillhouse.workflows.loader import WorkflowCatalog

NEEDED_HOSTS = ("github.com", "huggingface.co", "pypi.org")
PROBE_TIMEOUT_S = 5.0


def install(workspace: Path) -> Path:
    """ComfyUI and the default workflow's models in `workspace`; reused when present."""
    unreachable = [host for host in NEEDED_HOSTS if not _reachable(host)]
    if unreachable:
        raise click.ClickException(
            "--install-comfy downloads ComfyUI and a model, but "
            f"{', '.join(unreachable)} cannot be reached from here (no internet?). "
            "Run `stillhouse up` without it for preview mode, or set COMFYUI_URL to a "
            "running ComfyUI."
        )
    comfy = shutil.which("comfy") or _install_comfy_cli()
    workspace = workspace.resolve()
    if not (workspace / "main.py").exists():
        click.echo(f"installing ComfyUI into {workspace} with comfy-cli (a few minutes)...")
        device = "--nvidia" if shutil.which("nvidia-smi") else "--cpu"
        _run([comfy, "--workspace", str(workspace), "--skip-prompt", "install", device])
    for folder, file, url in _default_models():
        target = workspace / "models" / folder / file
        if target.exists():
            continue
        click.echo(f"downloading {file} into models/{folder} ...")
        _run(
            [
                comfy,
                "--workspace",
                str(workspace),
                "--skip-prompt",
                "model",
                "download",
                "--url",
                url,
                "--relative-path",
                f"models/{folder}",
                "--filename",
                file,
            ]
        )
    return workspace


def _default_models() -> list[tuple[str, str, str]]:
    own = os.environ.get("STILLHOUSE_WORKFLOWS__DIR")
    catalog = WorkflowCatalog.load(Path(own) if own else None)
    name = os.environ.get("STILLHOUSE_INTAKE__DEFAULT_WORKFLOW", "sd15-txt2img")
    workflow = catalog.workflows.get(name)
    if workflow is None:
        return []
    return [(m.folder, m.file, m.url) for m in workflow.manifest.models if m.url]


def _install_comfy_cli() -> str:
    click.echo("installing comfy-cli...")
    _run([sys.executable, "-m", "pip", "install", "--quiet", "comfy-cli"])
    found = shutil.which("comfy") or str(Path(sys.executable).with_name("comfy"))
    if not Path(found).exists():
        raise click.ClickException("comfy-cli installed, but its `comfy` command is not found")
    return found


def _run(command: list[str]) -> None:
    result = subprocess.run(command, check=False)  # noqa: S603 - our own fixed commands
    if result.returncode != 0:
        raise click.ClickException(f"{' '.join(command[:4])} ... failed ({result.returncode})")


def _reachable(host: str) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False
