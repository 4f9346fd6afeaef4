"""The ComfyUI captures in ../shared/comfy: real graphs and real 400 answers."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from stillhouse.schemas.graph import ComfyGraph

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = ROOT / "tests" / "fixtures" / "comfy"
# The models the capturing ComfyUI had installed (see resp_bad_ckpt.txt and save_ckpt.json).
CAPTURED_MODELS = {"rand-sd15.safetensors", "rand-sd15"}
# The raw /object_info of that server, where this machine has it (not committed: prose).
RAW_OBJECT_INFO = Path(
    os.environ.get(
        "STILLHOUSE_RAW_OBJECT_INFO", ROOT.parent / "shared" / "comfy" / "object_info.json"
    )
)


def captured_graph(name: str) -> ComfyGraph:
    """A graph from the captured workflows."""
    return ComfyGraph.model_validate_json((CAPTURES / "workflows" / name).read_text())


def captured_rejection(name: str) -> dict[str, Any]:
    """The JSON body of a captured `POST /prompt` 400 answer."""
    text = (CAPTURES / "captures" / name).read_text()
    return json.loads(text[text.index("{") :])
