"""Fetch the model files workflows declare into a ComfyUI's models folder.

    python -m worker.models --comfy /comfyui [--workflows YOUR_FOLDER]
                            [--models-file MODELS.toml] [NAME ...]

Used by the worker image (bake models at build time) and for a network volume. With
`--models-file` (the operators' STILLHOUSE_WORKFLOWS__MODELS_FILE), the catalog's
checkpoints and LoRAs too. Files already present are kept; a declared sha256 is checked
after download.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import urllib.request
from pathlib import Path

from stillhouse.models_catalog import ModelCatalog
from stillhouse.schemas.manifest import ModelFile
from stillhouse.workflows.loader import WorkflowCatalog

CHUNK = 2**20


def wanted(
    catalog: WorkflowCatalog, names: list[str], models_file: Path | None = None
) -> list[ModelFile]:
    """Every model the named workflows (default: all) declare, and the checkpoints and
    LoRAs of the models catalog in `models_file` with a URL, once each."""
    workflows = [catalog.get(n) for n in names] if names else list(catalog.workflows.values())
    seen: dict[tuple[str, str], ModelFile] = {}
    for workflow in workflows:
        for model in workflow.manifest.models:
            seen.setdefault((model.folder, model.file), model)
    extra = ModelCatalog.from_file(models_file).downloads() if models_file else []
    for model in extra:
        seen.setdefault((model.folder, model.file), model)
    return list(seen.values())


def fetch(model: ModelFile, models_dir: Path) -> str:
    """Download one model unless present; 'kept', 'downloaded' or raises."""
    target = models_dir / model.folder / model.file
    if target.exists():
        return "kept"
    if model.url is None:
        raise SystemExit(f"{model.folder}/{model.file} is missing and has no url to fetch it from")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    with urllib.request.urlopen(model.url, timeout=60) as response, partial.open("wb") as out:  # noqa: S310 - https only (manifest)
        while block := response.read(CHUNK):
            digest.update(block)
            out.write(block)
    if model.sha256 and digest.hexdigest() != model.sha256:
        partial.unlink()
        raise SystemExit(f"{model.file}: sha256 {digest.hexdigest()} is not the declared one")
    os.replace(partial, target)
    return "downloaded"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--comfy", type=Path, required=True, help="ComfyUI folder (or workspace)")
    parser.add_argument(
        "--workflows", type=Path, default=None, help="your own folder, besides the shipped ones"
    )
    parser.add_argument(
        "--models-file", type=Path, default=None, help="the models catalog: its files too"
    )
    parser.add_argument("names", nargs="*", help="workflows whose models to fetch (default: all)")
    args = parser.parse_args()
    catalog = WorkflowCatalog.load(args.workflows)
    models = wanted(catalog, args.names, args.models_file)
    for model in models:
        print(f"{fetch(model, args.comfy / 'models')}: {model.folder}/{model.file}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
