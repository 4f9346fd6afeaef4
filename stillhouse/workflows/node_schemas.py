"""ComfyUI's node schemas (`GET /object_info`), reduced to what validation needs.

The committed snapshot drops the prose (tooltips, descriptions) and the lists of files a
particular installation happens to have (checkpoints, VAEs, uploads): those are deployment
state, not schema. Such inputs are marked `files`; a workflow's manifest declares which
model files it loads, and validation checks against that.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, RootModel

SNAPSHOT_FILE = "node_schemas.json"
MODEL_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft", ".onnx")
# Loaders whose file list ComfyUI pads with virtual entries, so emptiness is no sign.
FOLDER_BACKED = {("VAELoader", "vae_name")}
LINK_TYPES_ANY = "*"


class InputSpec(BaseModel):
    """One input of a node type."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(description="INT, FLOAT, STRING, BOOLEAN, COMBO, or a link type")
    required: bool
    default: Any = None
    min: int | float | None = None
    max: int | float | None = None
    step: int | float | None = None
    options: list[Any] | None = None
    files: bool = False  # COMBO of installed model files: checked against the manifest
    upload: bool = False  # COMBO of uploaded images: any safe file name the worker staged

    @property
    def is_link_type(self) -> bool:
        """True when only a link can feed it (MODEL, LATENT, IMAGE ...)."""
        return self.type not in {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


class NodeSpec(BaseModel):
    """A node type: inputs (required first, in ComfyUI's order) and output types."""

    model_config = ConfigDict(extra="forbid")

    display_name: str = ""
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    outputs: list[str] = Field(default_factory=list)
    output_node: bool = False


class NodeSchemas(RootModel[dict[str, NodeSpec]]):
    """Every node type a ComfyUI knows."""

    def get(self, class_type: str) -> NodeSpec | None:
        """The schema of a node type, or None if ComfyUI has no such node."""
        return self.root.get(class_type)

    @classmethod
    def from_object_info(cls, object_info: dict[str, Any]) -> NodeSchemas:
        """Reduce a raw `/object_info` answer (prose and installed file lists dropped)."""
        return cls({name: _node(name, raw) for name, raw in sorted(object_info.items())})

    @classmethod
    def load(cls, path: Path | None = None) -> NodeSchemas:
        """A snapshot file (ours or a raw `/object_info` dump); default: the shipped one."""
        if path is None:
            text = resources.files(__package__).joinpath(SNAPSHOT_FILE).read_text()
        else:
            text = path.read_text()
        data = json.loads(text)
        if data and "input" in next(iter(data.values())):  # a raw /object_info answer
            return cls.from_object_info(data)
        return cls.model_validate(data)

    def dump(self) -> str:
        """Stable JSON for committing: sorted, one node per line-block, no nulls."""
        return json.dumps(self.model_dump(exclude_defaults=True), indent=1, sort_keys=True) + "\n"


def _node(name: str, raw: dict[str, Any]) -> NodeSpec:
    sections = raw.get("input", {})
    inputs: dict[str, InputSpec] = {}
    for section, required in (("required", True), ("optional", False)):
        for input_name, spec in (sections.get(section) or {}).items():
            inputs[input_name] = _input(name, input_name, spec, required)
    return NodeSpec(
        display_name=raw.get("display_name") or "",
        inputs=inputs,
        outputs=list(raw.get("output") or []),
        output_node=bool(raw.get("output_node")),
    )


def _input(node: str, name: str, spec: Any, required: bool) -> InputSpec:
    kind = spec[0] if isinstance(spec, list) and spec else spec
    extra: dict[str, Any] = spec[1] if isinstance(spec, list) and len(spec) > 1 else {}
    extra = extra if isinstance(extra, dict) else {}
    options: list[Any] | None = None
    if isinstance(kind, list):  # the classic form: the options are the type
        options, kind = kind, "COMBO"
    elif kind == "COMBO":
        options = list(extra.get("options") or [])
    kind = str(kind)
    fields: dict[str, Any] = {
        key: extra[key] for key in ("default", "min", "max", "step") if key in extra
    }
    upload = bool(extra.get("image_upload"))
    files = False
    if options is not None and not upload:
        files = (
            not options
            or (node, name) in FOLDER_BACKED
            or any(isinstance(o, str) and o.lower().endswith(MODEL_EXTENSIONS) for o in options)
        )
        if files:
            options = [o for o in options if not _is_file(o)]
    if upload:
        options = None
        fields.pop("default", None)
    if files and "default" in fields and _is_file(fields["default"]):
        fields.pop("default")
    return InputSpec(
        type=kind, required=required, options=options, files=files, upload=upload, **fields
    )


def _is_file(option: Any) -> bool:
    return isinstance(option, str) and "." in option
