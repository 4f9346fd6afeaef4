"""The images the double "renders": real PNGs of the size and count the graph asks for,
with the graph in a `prompt` text chunk, as ComfyUI writes them by default."""

from __future__ import annotations

import hashlib
import io
import json
import math
import random
import re
from collections.abc import Callable
from typing import Any

from PIL import Image, ImageOps, ImageSequence
from PIL.PngImagePlugin import PngInfo

Graph = dict[str, dict[str, Any]]
Shape = tuple[int, int, int]  # width, height, batch size; a latent as the pixels it decodes to
DEFAULT: Shape = (512, 512, 1)
LATENTS = ("EmptyLatentImage", "EmptySD3LatentImage")
VAE_RATIO = 8  # SD1.5/SDXL/FLUX VAEs: one latent pixel per 8x8 image pixels
# Nodes whose output has the shape of one input, as ComfyUI computes them: samplers keep the
# latent's, masks and filters the image's (VAE encoders crop to multiples of 8: _crop).
PASS_THROUGH = {
    "KSampler": "latent_image",
    "KSamplerAdvanced": "latent_image",
    "SamplerCustom": "latent_image",
    "SamplerCustomAdvanced": "latent_image",
    "SetLatentNoiseMask": "samples",
    "VAEDecode": "samples",
    "VAEDecodeTiled": "samples",
    "ImageToMask": "image",
    "MaskToImage": "mask",
    "Canny": "image",
    "ImageInvert": "image",
    "ImageBlur": "image",
    "ImageSharpen": "image",
    "InvertMask": "mask",
    "GrowMask": "mask",
    "ThresholdMask": "mask",
    "ImageCompositeMasked": "destination",  # the source is pasted into the destination
}
_FACTOR = re.compile(r"(?:^|[^0-9a-z])(\d+)x|x(\d+)(?:$|[^0-9])", re.IGNORECASE)


def plan(
    graph: Graph, read_input: Callable[[str], bytes | None], output: str | None = None
) -> tuple[int, int, int]:
    """(width, height, count) of what the output node `output` (default: the graph's
    first SaveImage/PreviewImage) will save, following its images back through the graph
    as ComfyUI's nodes would size them; `read_input` gives a LoadImage's file (None when
    ComfyUI's input folder has no such image: then 512x512, as before)."""
    if output is None:
        output = next(
            (n for n, v in graph.items() if v.get("class_type") in ("SaveImage", "PreviewImage")),
            None,
        )
    if output is None or output not in graph:
        return DEFAULT
    return _Sizes(graph, read_input).of_input(output, "images") or DEFAULT


class _Sizes:
    """The shape of each node's output, computed once, upstream first."""

    def __init__(self, graph: Graph, read_input: Callable[[str], bytes | None]) -> None:
        self.graph, self.read_input = graph, read_input
        self.memo: dict[str, Shape | None] = {}

    def of_input(self, node_id: str, name: str) -> Shape | None:
        """The shape arriving at input `name` of `node_id` (None: not a link)."""
        value = self.graph[node_id].get("inputs", {}).get(name)
        if isinstance(value, list) and len(value) == 2 and str(value[0]) in self.graph:
            return self.of(str(value[0]))
        return None

    def of(self, node_id: str) -> Shape | None:
        if node_id not in self.memo:
            self.memo[node_id] = None  # a cycle reads as unknown instead of recursing
            self.memo[node_id] = self._compute(node_id)
        return self.memo[node_id]

    def _compute(self, node_id: str) -> Shape | None:
        node = self.graph[node_id]
        kind, inputs = str(node.get("class_type")), node.get("inputs", {})
        if kind in PASS_THROUGH:
            return self.of_input(node_id, PASS_THROUGH[kind])
        rule = _RULES.get(kind)
        if rule is not None:
            return rule(self, node_id, inputs)
        return self._first_linked(node_id)

    def _empty(self, node_id: str, inputs: dict[str, Any]) -> Shape | None:
        ratio = 1 if self.graph[node_id].get("class_type") == "EmptyImage" else VAE_RATIO
        width, height = _int(inputs, "width", 512), _int(inputs, "height", 512)
        return (width // ratio * ratio, height // ratio * ratio, _int(inputs, "batch_size", 1))

    def _load_image(self, node_id: str, inputs: dict[str, Any]) -> Shape | None:
        frames = self.graph[node_id].get("class_type") == "LoadImage"
        return self._load(inputs.get("image"), frames=frames)

    def _encode(self, node_id: str, inputs: dict[str, Any]) -> Shape | None:
        return _crop(self.of_input(node_id, "pixels"))

    def _repeat(self, node_id: str, inputs: dict[str, Any]) -> Shape | None:
        shape = self.of_input(node_id, "samples") or self.of_input(node_id, "image")
        return (shape[0], shape[1], shape[2] * _int(inputs, "amount", 1)) if shape else None

    def _upscale_with_model(self, node_id: str, inputs: dict[str, Any]) -> Shape | None:
        shape = self.of_input(node_id, "image")
        factor = self._model_factor(inputs.get("upscale_model"))
        return (shape[0] * factor, shape[1] * factor, shape[2]) if shape else None

    def _scale_by(self, node_id: str, inputs: dict[str, Any]) -> Shape | None:
        # nodes.py ImageScaleBy: round(side * scale_by)
        shape = self.of_input(node_id, "image")
        by = float(inputs.get("scale_by", 1.0))
        return (round(shape[0] * by), round(shape[1] * by), shape[2]) if shape else None

    def _image_scale(self, node_id: str, inputs: dict[str, Any]) -> Shape | None:
        return _scale(self.of_input(node_id, "image"), inputs)

    def _total_pixels(self, node_id: str, inputs: dict[str, Any]) -> Shape | None:
        shape = self.of_input(node_id, "image")
        if shape is None:
            return None
        # ComfyUI counts a megapixel as 1024 * 1024; the double keeps its earlier 10**6,
        # which tests/worker/test_inputs.py's 400_000 (+/- 10_000) was written against.
        # A megapixel here is 1024 x 1024 pixels, as ComfyUI counts them (the real one's
        # sizes: tests/worker/test_real_comfyui_workflows.py).
        total = int(float(inputs.get("megapixels", 1.0)) * 1024 * 1024)
        factor = math.sqrt(total / (shape[0] * shape[1]))
        return (round(shape[0] * factor), round(shape[1] * factor), shape[2])

    def _pad(self, node_id: str, inputs: dict[str, Any]) -> Shape | None:
        # nodes.py ImagePadForOutpaint: a new canvas (and mask) with the sides added
        shape = self.of_input(node_id, "image")
        if shape is None:
            return None
        left, top, right, bottom = (_int(inputs, s, 0) for s in ("left", "top", "right", "bottom"))
        return (shape[0] + left + right, shape[1] + top + bottom, shape[2])

    def _batch(self, node_id: str, inputs: dict[str, Any]) -> Shape | None:
        first, second = self.of_input(node_id, "image1"), self.of_input(node_id, "image2")
        if first is None or second is None:
            return first or second
        return (first[0], first[1], first[2] + second[2])  # image2 is resized to image1

    def _latent_scale_by(self, node_id: str, inputs: dict[str, Any]) -> Shape | None:
        # nodes.py LatentUpscaleBy: round(latent side * scale_by)
        shape = self.of_input(node_id, "samples")
        if shape is None:
            return None
        by = float(inputs.get("scale_by", 1.0))
        width, height = (round(shape[i] // VAE_RATIO * by) * VAE_RATIO for i in (0, 1))
        return (width, height, shape[2])

    def _latent_scale(self, node_id: str, inputs: dict[str, Any]) -> Shape | None:
        return _crop(_scale(self.of_input(node_id, "samples"), inputs))

    def _first_linked(self, node_id: str) -> Shape | None:
        # A node the double does not know: the shape of the first image, latent or mask
        # it reads (most image nodes keep their input's size).
        for name in ("samples", "latent_image", "image", "images", "pixels", "mask"):
            shape = self.of_input(node_id, name)
            if shape is not None:
                return shape
        return None

    def _load(self, name: object, frames: bool) -> Shape | None:
        data = self.read_input(name) if isinstance(name, str) else None
        if data is None:
            return DEFAULT
        # nodes.py LoadImage: EXIF orientation applied; every frame of the first frame's
        # size is one image of the batch (MPO's frames are not); LoadImageMask: one frame.
        with Image.open(io.BytesIO(data)) as image:
            width, height = ImageOps.exif_transpose(image).size
            count = 1
            if frames and image.format != "MPO":
                count = 0
                for frame in ImageSequence.Iterator(image):
                    count += frame.size == image.size
        return (width, height, max(1, count))

    def _model_factor(self, link: object) -> int:
        # ComfyUI reads the factor from the model's weights; the double, from its file
        # name as ESRGAN models are named (RealESRGAN_x4.pth, 4x-UltraSharp.pth): else 2.
        if not (isinstance(link, list) and len(link) == 2 and str(link[0]) in self.graph):
            return 2
        name = self.graph[str(link[0])].get("inputs", {}).get("model_name")
        match = _FACTOR.search(name) if isinstance(name, str) else None
        return int(match[1] or match[2]) if match else 2


def _int(inputs: dict[str, Any], name: str, default: int) -> int:
    value = inputs.get(name, default)
    return int(value) if isinstance(value, int | float | str) else default


def _crop(shape: Shape | None) -> Shape | None:
    """VAE.encode's vae_encode_crop_pixels: each side down to a multiple of 8."""
    if shape is None:
        return None
    return (shape[0] // VAE_RATIO * VAE_RATIO, shape[1] // VAE_RATIO * VAE_RATIO, shape[2])


def _scale(shape: Shape | None, inputs: dict[str, Any]) -> Shape | None:
    """nodes.py ImageScale (and LatentUpscale): a zero side keeps the aspect ratio."""
    if shape is None:
        return None
    width, height = _int(inputs, "width", 0), _int(inputs, "height", 0)
    if width == 0 and height == 0:
        return shape
    if width == 0:
        width = max(1, round(shape[0] * height / shape[1]))
    elif height == 0:
        height = max(1, round(shape[1] * width / shape[0]))
    return (width, height, shape[2])


_RULES: dict[str, Callable[[_Sizes, str, dict[str, Any]], Shape | None]] = {
    "EmptyLatentImage": _Sizes._empty,
    "EmptySD3LatentImage": _Sizes._empty,
    "EmptyImage": _Sizes._empty,
    "LoadImage": _Sizes._load_image,
    "LoadImageMask": _Sizes._load_image,
    "VAEEncode": _Sizes._encode,
    "VAEEncodeForInpaint": _Sizes._encode,
    "InpaintModelConditioning": _Sizes._encode,  # its LATENT output
    "RepeatLatentBatch": _Sizes._repeat,
    "RepeatImageBatch": _Sizes._repeat,
    "ImageUpscaleWithModel": _Sizes._upscale_with_model,
    "ImageScaleBy": _Sizes._scale_by,
    "ImageScale": _Sizes._image_scale,
    "ImageScaleToTotalPixels": _Sizes._total_pixels,
    "ImagePadForOutpaint": _Sizes._pad,
    "ImageBatch": _Sizes._batch,
    "LatentUpscaleBy": _Sizes._latent_scale_by,
    "LatentUpscale": _Sizes._latent_scale,
}


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
