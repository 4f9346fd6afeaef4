"""`stillhouse up` as its own process with a local worker whose ComfyUI is the double:
for the tests and the bench that check it behaves as production does."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.support import free_port, wait_until
from tests.worker.comfy_double import double_command

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Up:
    """A running `stillhouse up` and the ComfyUI double its local worker starts."""

    api: str
    comfy: str

    def post(self, steps: int) -> str:
        body = {"prompt": "a lighthouse", "params": {"steps": steps}}
        answer = requests.post(f"{self.api}/v1/generations", json=body, timeout=10)
        assert answer.status_code == 202, answer.text
        return str(answer.json()["id"])

    def view(self, generation_id: str) -> dict[str, Any]:
        answer = requests.get(f"{self.api}/v1/generations/{generation_id}", timeout=10)
        return dict(answer.json())

    def history(self) -> dict[str, Any]:
        return dict(requests.get(f"{self.comfy}/history", timeout=10).json())


def start_up(
    tmp: Path, *comfy_switches: str, **settings: str
) -> tuple[subprocess.Popen[bytes], Up]:
    """`stillhouse up` (settings: extra STILLHOUSE_ variables) and its ComfyUI double."""
    api_port, comfy_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STILLHOUSE_", "COMFYUI_"))}
    env.pop("DISCORD_TOKEN", None)
    env.update(
        {
            "STILLHOUSE_DATA_DIR": str(tmp / "data"),
            "STILLHOUSE_MASTER__BACKEND": "local",
            "STILLHOUSE_WORKER__COMFY_URL": f"http://127.0.0.1:{comfy_port}",
            "STILLHOUSE_WORKER__COMFY_COMMAND": double_command(comfy_port, *comfy_switches),
            "STILLHOUSE_WORKER__PROGRESS_INTERVAL_S": "0.2",
            "STILLHOUSE_MASTER__PROGRESS_INTERVAL_S": "0.2",
            **{f"STILLHOUSE_{k.upper()}": v for k, v in settings.items()},
        }
    )
    stillhouse = Path(sys.executable).with_name("stillhouse")
    with (tmp / "up.log").open("ab") as log:
        process = subprocess.Popen(
            [str(stillhouse), "up", "--port", str(api_port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    up = Up(f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{comfy_port}")

    def healthy() -> bool:
        try:
            return requests.get(f"{up.api}/v1/health", timeout=2).ok
        except requests.RequestException:
            return False

    wait_until(healthy, 60, 0.2, what="stillhouse up")
    return process, up
