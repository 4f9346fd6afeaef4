"""The images the double "renders": real PNGs of the size and count the graph asks for,
with the graph in a `prompt` text chunk, as ComfyUI writes them by default."""

from __future__ import annotations

import hashlib
import io
import json
import random
from collections.abc import Callable
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

Graph = dict[str, dict[str, Any]]
LATENTS = ("EmptyLatentImage", "EmptySD3LatentImage")


def plan(graph: Graph, read_input: Callable[[str], bytes | None]) -> tuple[int, int, int]:
    """(width, height, count) of what the output nodes will save; `read_input` gives a
    LoadImage's file (None when ComfyUI's input folder has no such image)."""
    width, height, count = 512, 512, 1
    for node in graph.values():
        inputs = node.get("inputs", {})
        if node.get("class_type") in LATENTS:
            width, height = int(inputs.get("width", 512)), int(inputs.get("height", 512))
            count = int(inputs.get("batch_size", 1))
        elif node.get("class_type") == "LoadImage" and isinstance(inputs.get("image"), str):
            data = read_input(inputs["image"])
            if data is not None:
                with Image.open(io.BytesIO(data)) as image:
                    width, height = image.size
    scale = 1.0
    for node in graph.values():
        kind, inputs = node.get("class_type"), node.get("inputs", {})
        if kind == "RepeatLatentBatch":
            count *= int(inputs.get("amount", 1))
        elif kind == "ImageUpscaleWithModel":
            scale *= 2.0
        elif kind == "ImageScaleBy":
            scale *= float(inputs.get("scale_by", 1.0))
        elif kind == "ImageScaleToTotalPixels":
            factor = (float(inputs.get("megapixels", 1.0)) * 1e6 / (width * height)) ** 0.5
            width, height = max(8, int(width * factor)), max(8, int(height * factor))
    return max(1, int(width * scale)), max(1, int(height * scale)), count


def render_png(
    graph: Graph, width: int, height: int, index: int, embed: bool, *, textured: bool = False
) -> bytes:
    """A solid-colour PNG whose colour follows the graph (so retries differ by seed);
    `textured`: half of its rows noise, so it weighs what a generated image weighs (about
    400 KB at 512x512), saved as ComfyUI's SaveImage saves (compress_level 4)."""
    digest = hashlib.sha256(json.dumps(graph, sort_keys=True).encode() + bytes([index])).digest()
    image = Image.new("RGB", (width, height), tuple(digest[:3]))
    if textured:
        rows = height // 2
        noise = random.Random(digest).randbytes(width * rows * 3)
        image.paste(Image.frombytes("RGB", (width, rows), noise), (0, 0))
    info = PngInfo()
    if embed:
        info.add_text("prompt", json.dumps(graph))
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=info, compress_level=4 if textured else 1)
    return out.getvalue()
