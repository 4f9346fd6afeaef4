#!/usr/bin/env bash
# Worker entry point: use models from a RunPod network volume when one is mounted, then
# hand over to the stillhouse worker (which starts ComfyUI and serves RunPod jobs).
set -euo pipefail

VOLUME_MODELS=/runpod-volume/models
if [ -d "$VOLUME_MODELS" ]; then
  cat > /comfyui/extra_model_paths.yaml <<YAML
runpod_volume:
  base_path: ${VOLUME_MODELS}
  checkpoints: checkpoints/
  diffusion_models: diffusion_models/
  text_encoders: text_encoders/
  clip: clip/
  vae: vae/
  loras: loras/
  upscale_models: upscale_models/
  controlnet: controlnet/
YAML
fi

exec python -m worker "$@"
