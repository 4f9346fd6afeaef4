"""What a graph may do on this worker: allowed node types, and where outputs are saved."""

from __future__ import annotations

import secrets

from stillhouse.schemas.graph import ComfyGraph
from worker.errors import invalid_input

# Core nodes that compute images and nothing else: no arbitrary file paths, no network,
# no saving outside the output folder under a name we choose. Extend it per deployment
# with STILLHOUSE_WORKER__ALLOWED_NODES.
DEFAULT_ALLOWED_NODES = frozenset(
    {
        "CheckpointLoaderSimple",
        "CLIPLoader",
        "DualCLIPLoader",
        "UNETLoader",
        "VAELoader",
        "LoraLoader",
        "LoraLoaderModelOnly",
        "UpscaleModelLoader",
        "ControlNetLoader",
        "CLIPTextEncode",
        "CLIPTextEncodeSDXL",
        "CLIPSetLastLayer",
        "ConditioningZeroOut",
        "ConditioningCombine",
        "ControlNetApplyAdvanced",
        "FluxGuidance",
        "ModelSamplingFlux",
        "ModelSamplingDiscrete",
        "EmptyLatentImage",
        "EmptySD3LatentImage",
        "LatentUpscale",
        "LatentUpscaleBy",
        "RepeatLatentBatch",
        "KSampler",
        "KSamplerAdvanced",
        "VAEDecode",
        "VAEEncode",
        "VAEDecodeTiled",
        "VAEEncodeTiled",
        "ImageScale",
        "ImageScaleBy",
        "ImageScaleToTotalPixels",
        "ImageUpscaleWithModel",
        "ImageInvert",
        "ImageBatch",
        "ImagePadForOutpaint",
        "LoadImage",
        "SaveImage",
        "PreviewImage",  # saved like SaveImage (see enforce)
    }
)
# Inputs of output nodes that name the saved file; the worker sets them itself.
FILENAME_INPUTS = ("filename_prefix",)
# Graphs exported from ComfyUI's UI often end in a preview: it becomes a saved output.
PREVIEW_NODES = frozenset({"PreviewImage"})


def allowed_nodes(configured: str) -> frozenset[str]:
    """The configured allow-list, or the built-in one when empty."""
    names = {n.strip() for n in configured.split(",") if n.strip()}
    return frozenset(names) or DEFAULT_ALLOWED_NODES


def job_folder(job_id: str) -> str:
    """Where one attempt's images go, under ComfyUI's output folder (unique per attempt)."""
    return f"stillhouse/{job_id}-{secrets.token_hex(4)}"


def enforce(graph: ComfyGraph, allowed: frozenset[str], folder: str) -> ComfyGraph:
    """Refuse disallowed nodes; point every saved file into this attempt's own folder;
    save what a preview node shows (its images are the job's output, like saved ones).

    The per-attempt folder also defeats ComfyUI's cache of identical graphs, which would
    otherwise answer a repeated job with no new images, and tells clean-up what is ours.
    """
    refused = sorted(graph.node_types() - allowed)
    if refused:
        raise invalid_input(f"node types not allowed on this worker: {', '.join(refused)}")
    nodes = {}
    for node_id, node in graph.root.items():
        inputs = dict(node.inputs)
        update: dict[str, object] = {}
        if node.class_type in PREVIEW_NODES:
            update["class_type"] = "SaveImage"
            inputs = {"images": inputs.get("images"), FILENAME_INPUTS[0]: ""}
        for name in FILENAME_INPUTS:
            if name in inputs:
                inputs[name] = f"{folder}/img"
        nodes[node_id] = node.model_copy(update={**update, "inputs": inputs})
    return ComfyGraph(nodes)
