"""A random-weight checkpoint from a manifest of its tensors, with torch alone (no
diffusers, no transformers): for a machine where the random SD1.5 of
../shared/comfy/make_random_sd15.py cannot be built, e.g. one without a package registry.

    python bench/make_random_checkpoint.py MANIFEST OUT.safetensors [--std 0.02] [--seed 0]
    python bench/make_random_checkpoint.py --manifest-of CHECKPOINT MANIFEST

MANIFEST is JSON, {tensor name: [shape, dtype]}, as `--manifest-of` writes it from a
checkpoint built the long way (make_random_sd15.py, then ComfyUI's CheckpointSave). Norm
weights are ones, biases zeros, integer tensors (position ids) counts along their last
axis, everything else normal noise of --std; made on the GPU when there is one. The
output costs what the real model costs to load and run; its images are noise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

Manifest = dict[str, tuple[list[int], str]]


def manifest_of(checkpoint: Path) -> Manifest:
    """Every tensor's shape and dtype (e.g. "float16"), without loading the tensors."""
    with safe_open(str(checkpoint), framework="pt") as f:
        return {
            key: (list(f.get_slice(key).get_shape()), str(f.get_slice(key).get_dtype()))
            for key in f.keys()  # noqa: SIM118 (safe_open has no __iter__)
        }


DTYPES = {
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F32": torch.float32,
    "F64": torch.float64,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def make(
    key: str, shape: list[int], dtype: torch.dtype, std: float, gen: torch.Generator
) -> torch.Tensor:
    device = gen.device
    if not dtype.is_floating_point:
        if not shape:
            return torch.zeros((), dtype=dtype)
        counts = torch.arange(shape[-1], dtype=dtype, device=device)
        return counts.expand(shape).contiguous().cpu()
    last = key.rsplit(".", 1)[-1]
    is_norm = any(part in key for part in ("norm", "ln_", "layer_norm")) or key.endswith(".gamma")
    if last == "bias":
        return torch.zeros(shape, dtype=dtype)
    if is_norm and len(shape) == 1:
        return torch.ones(shape, dtype=dtype)
    noise = torch.randn(shape, generator=gen, device=device, dtype=torch.float32) * std
    return noise.to(dtype).cpu()


def write(manifest: Manifest, out: Path, std: float, seed: int) -> tuple[int, str]:
    """Write the checkpoint; (parameters, device used)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    gen = torch.Generator(device=device).manual_seed(seed)
    tensors = {}
    for key, (shape, dtype) in sorted(manifest.items()):
        tensors[key] = make(key, shape, DTYPES[dtype], std, gen)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out))
    return sum(t.numel() for t in tensors.values()), device


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("source", type=Path, help="MANIFEST (or CHECKPOINT with --manifest-of)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--manifest-of", action="store_true")
    parser.add_argument("--std", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.manifest_of:
        manifest = manifest_of(args.source)
        args.out.write_text(json.dumps(manifest, indent=0, sort_keys=True) + "\n")
        print(f"{len(manifest)} tensors of {args.source} in {args.out}")
        return 0
    began = time.perf_counter()
    manifest = {k: (v[0], v[1]) for k, v in json.loads(args.source.read_text()).items()}
    count, device = write(manifest, args.out, args.std, args.seed)
    print(
        f"wrote {args.out}: {len(manifest)} tensors, {count / 1e6:.0f} M parameters, "
        f"{args.out.stat().st_size / 2**30:.2f} GiB in {time.perf_counter() - began:.1f} s "
        f"({device})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
