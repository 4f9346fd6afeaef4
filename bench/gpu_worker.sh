#!/usr/bin/env bash
# The worker against bare ComfyUI on a GPU, in one go: a real ComfyUI with a random-weight
# SD1.5 (512x512, 20 steps by default), measured by a bare client (bench/comfy_baseline.py),
# by the worker's handler one job after another (bench/worker_overhead.py) and by the real
# runpod worker loop holding 1 and 2 jobs (bench/gpu_duty_cycle.py --comfy-url).
#
#   bench/gpu_worker.sh [--cpu]          # from the repository root
#
# It needs, in GPU_BENCH_DIR (default .gpu, kept out of git by .git/info/exclude):
#   ComfyUI/         ComfyUI's source (0.3.64; never committed here)
#   wheels/          the Python packages the machine lacks, installed with --no-deps
#   stubs/           stand-ins for packages ComfyUI only imports (its web frontend)
#   sd15_keys.json   the SD1.5 checkpoint's tensors (bench/make_random_checkpoint.py), or
#   make_random_sd15.py  ../shared/comfy's builder (needs a carried diffusers wheel): the
#                    random model is built there in diffusers layout and ComfyUI's own
#                    DiffusersLoader -> CheckpointSave turns it into the checkpoint
# ComfyUI's models, inputs, outputs and user files go to GPU_BENCH_WORK (default
# /tmp/gpu-bench-comfy, its --base-directory), never into GPU_BENCH_DIR.
# Everything it prints goes to $OUT/gpu.log too, ComfyUI's log to $OUT/comfy.log, the
# baseline's figures to $OUT/baseline.json, the runpod worker processes' logs (the duty
# cycle step's) to $OUT/worker.log. Each step has a time limit; a failed step is
# reported and the run goes on where it can, then exits non-zero naming what failed.
#
# Settings (environment): GPU_BENCH_PYTHON (python3), GPU_BENCH_PORT (8188),
# GPU_BENCH_SIZE (512), GPU_BENCH_STEPS (20), GPU_BENCH_JOBS (20), GPU_BENCH_DUTY_JOBS
# (GPU_BENCH_JOBS), GPU_BENCH_SITE (/tmp/site, where the wheels go), GPU_BENCH_WHEELS
# (GPU_BENCH_DIR/wheels), GPU_BENCH_STEP_S (300, the longest a measuring step may take),
# GPU_BENCH_TOTAL_S (540: no measuring step runs past this many seconds from the start).
# GPU_BENCH_COMFY_ARGS (more arguments for ComfyUI's main.py, e.g. --disable-cuda-malloc),
# GPU_BENCH_WARM_S (GPU_BENCH_STEP_S / 3: the longest the duty cycle step waits for a
# worker's warm-up job, or for the next job to end, before failing with the worker's log),
# GPU_BENCH_ONLY (all; duty: only the worker loop step, after one warm-up prompt, skipping
# the bare ComfyUI and handler measurements).
# --cpu runs ComfyUI on the CPU, for a rehearsal with small sizes.
set -uo pipefail

PY=${GPU_BENCH_PYTHON:-python3}
PORT=${GPU_BENCH_PORT:-8188}
SIZE=${GPU_BENCH_SIZE:-512}
STEPS=${GPU_BENCH_STEPS:-20}
JOBS=${GPU_BENCH_JOBS:-20}
DUTY_JOBS=${GPU_BENCH_DUTY_JOBS:-$JOBS}
STEP_S=${GPU_BENCH_STEP_S:-300}
WARM_S=${GPU_BENCH_WARM_S:-$((STEP_S / 3))}
ONLY=${GPU_BENCH_ONLY:-all}
TOTAL_S=${GPU_BENCH_TOTAL_S:-540}
DIR=$(realpath "${GPU_BENCH_DIR:-.gpu}")
SITE=${GPU_BENCH_SITE:-/tmp/site}
WORK=${GPU_BENCH_WORK:-/tmp/gpu-bench-comfy}
WHEELS=${GPU_BENCH_WHEELS:-$DIR/wheels}
OUT=${OUT:-/tmp/gpu-bench-out}
read -ra COMFY_ARGS <<<"${GPU_BENCH_COMFY_ARGS:-}"
[[ ${1:-} == --cpu ]] && COMFY_ARGS+=(--cpu)
URL=http://127.0.0.1:$PORT
CKPT=rand-sd15.safetensors
export PYTHONUNBUFFERED=1

mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu.log") 2>&1

FAILED=()
COMFY_PID=

step() { printf '\n== %s  (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

finish() {
    if [[ -n $COMFY_PID ]] && kill -0 "$COMFY_PID" 2>/dev/null; then
        kill "$COMFY_PID" 2>/dev/null
        timeout 20 tail --pid="$COMFY_PID" -f /dev/null || kill -9 "$COMFY_PID" 2>/dev/null
    fi
    step "summary"
    grep -E '^(python |ComfyUI [0-9]|ComfyUI answers|wrote |warm |one after another|all [0-9]+ at once|handler p50|median overhead|GPU duty cycle|worker holds|1 job |2 jobs |pipelined|\[ *[0-9.]+ s\] (FAIL|holding [0-9]: done))' \
        "$OUT/gpu.log"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name --format=csv,noheader
    step "done in ${SECONDS} s"
    if ((${#FAILED[@]})); then
        echo "FAILED: ${FAILED[*]}"
        echo "--- the end of ComfyUI's log:"
        tail -n 40 "$OUT/comfy.log" 2>/dev/null
        if [[ -s $OUT/worker.log ]]; then
            echo "--- the end of the worker's log ($OUT/worker.log):"
            tail -n 40 "$OUT/worker.log"
        fi
        exit 1
    fi
    echo "all steps passed"
}
trap finish EXIT

fatal() {
    FAILED+=("$1")
    echo "FATAL: $1"
    exit 1
}

# a measuring step: runs under its time limit (and what is left of TOTAL_S); a failure
# is noted, the run goes on
measure() {
    local name=$1 limit=$STEP_S left=$((TOTAL_S - SECONDS - 15))
    shift
    step "$name"
    ((left < limit)) && limit=$left
    if ((limit < 30)); then
        echo "($name: skipped, ${left} s left of GPU_BENCH_TOTAL_S=${TOTAL_S})"
        FAILED+=("$name(no time left)")
        return
    fi
    timeout --kill-after=10 "$limit" "$@"
    local rc=$?
    if ((rc != 0)); then
        ((rc == 124)) && echo "($name: over its ${limit} s limit)"
        FAILED+=("$name(rc=$rc)")
    fi
}

[[ $ONLY == all || $ONLY == duty ]] || fatal "GPU_BENCH_ONLY=$ONLY: all or duty"

step "install the carried packages into $SITE"
timeout 180 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target "$SITE" "$WHEELS"/*.whl || fatal "pip install"
# ours first for what the machine lacks; the machine's own torch, numpy, ... stay (no
# carried wheel holds them)
export PYTHONPATH=$SITE:$DIR/stubs:$PWD

step "machine"
command -v nvidia-smi >/dev/null &&
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
timeout 120 "$PY" - <<'EOF' || fatal "python imports"
import sys, torch, transformers, numpy, pydantic, boto3, moto, runpod
cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
print(f"python {sys.version.split()[0]}, torch {torch.__version__} ({cuda}), transformers "
      f"{transformers.__version__}, numpy {numpy.__version__}, pydantic {pydantic.__version__}, "
      f"runpod {runpod.__version__}")
EOF

step "random SD1.5 checkpoint"
CKPTS=$WORK/models/checkpoints
mkdir -p "$CKPTS" "$WORK/custom_nodes" "$WORK/input" "$WORK/output" "$WORK/temp"
CONVERT=
if [[ ! -s $CKPTS/$CKPT && -s $DIR/sd15_keys.json ]]; then
    timeout 300 "$PY" bench/make_random_checkpoint.py "$DIR/sd15_keys.json" "$CKPTS/$CKPT" ||
        fatal "checkpoint"
elif [[ ! -s $CKPTS/$CKPT && -s $DIR/make_random_sd15.py ]]; then
    timeout 300 "$PY" "$DIR/make_random_sd15.py" "$WORK/models/diffusers/rand-sd15" ||
        fatal "random SD1.5 in diffusers layout"
    CONVERT=1  # once ComfyUI runs
elif [[ ! -s $CKPTS/$CKPT ]]; then
    fatal "no $DIR/sd15_keys.json or $DIR/make_random_sd15.py to make the checkpoint from"
fi

step "ComfyUI on $URL ${COMFY_ARGS[*]:-}"
(
    cd "$DIR/ComfyUI" &&
        PYTHONPATH=$SITE:$DIR/stubs exec "$PY" main.py --listen 127.0.0.1 --port "$PORT" \
            --disable-auto-launch --base-directory "$WORK" "${COMFY_ARGS[@]}"
) >"$OUT/comfy.log" 2>&1 &
COMFY_PID=$!
started=$SECONDS
until curl -sf "$URL/system_stats" >/dev/null; do
    kill -0 "$COMFY_PID" 2>/dev/null || fatal "ComfyUI exited while starting"
    ((SECONDS - started > 240)) && fatal "ComfyUI not answering after 240 s"
    sleep 0.5
done
echo "ComfyUI answers after $((SECONDS - started)) s"
curl -sf "$URL/system_stats" | "$PY" -c '
import json, sys
stats = json.load(sys.stdin)
print("ComfyUI", stats["system"].get("comfyui_version"), "on",
      ", ".join(d["name"] for d in stats["devices"]))'

if [[ -n $CONVERT ]]; then
    step "checkpoint from the diffusers folder (DiffusersLoader -> CheckpointSave)"
    timeout 300 "$PY" - "$URL" <<'PYEOF' || fatal "CheckpointSave"
import json, sys, time, urllib.request
url = sys.argv[1]
graph = {
    "1": {"class_type": "DiffusersLoader", "inputs": {"model_path": "rand-sd15"}},
    "2": {"class_type": "CheckpointSave", "inputs": {
        "model": ["1", 0], "clip": ["1", 1], "vae": ["1", 2],
        "filename_prefix": "checkpoints/rand-sd15"}},
}
body = json.dumps({"prompt": graph}).encode()
request = urllib.request.Request(f"{url}/prompt", body, {"Content-Type": "application/json"})
prompt_id = json.load(urllib.request.urlopen(request))["prompt_id"]
began = time.monotonic()
while time.monotonic() - began < 280:
    history = json.load(urllib.request.urlopen(f"{url}/history/{prompt_id}"))
    if prompt_id in history:
        status = history[prompt_id].get("status", {})
        print("CheckpointSave:", status.get("status_str"), f"after {time.monotonic() - began:.1f} s")
        sys.exit(0 if status.get("status_str") == "success" else 1)
    time.sleep(0.5)
sys.exit("CheckpointSave did not finish")
PYEOF
    saved=$(ls "$WORK"/output/checkpoints/rand-sd15*.safetensors 2>/dev/null | head -n 1)
    [[ -n $saved ]] || fatal "CheckpointSave wrote no file"
    mv "$saved" "$CKPTS/$CKPT"
    ls -la "$CKPTS/$CKPT"
fi
ln -sfn "$CKPT" "$CKPTS/v1-5-pruned-emaonly-fp16.safetensors"

case $ONLY in
all)
    measure "bare ComfyUI" "$PY" bench/comfy_baseline.py --comfy-url "$URL" --ckpt "$CKPT" \
        --size "$SIZE" --steps "$STEPS" --jobs "$JOBS" --json "$OUT/baseline.json"
    measure "worker handler" "$PY" bench/worker_overhead.py --comfy-url "$URL" --ckpt "$CKPT" \
        --size "$SIZE" --steps "$STEPS" --jobs "$JOBS"
    ;;
duty)
    measure "ComfyUI warm-up" "$PY" bench/comfy_baseline.py --comfy-url "$URL" --ckpt "$CKPT" \
        --size "$SIZE" --steps "$STEPS" --warm-only
    ;;
esac
measure "worker loop, 1 and 2 jobs held" "$PY" bench/gpu_duty_cycle.py --comfy-url "$URL" \
    --ckpt "$CKPT" --size "$SIZE" --steps "$STEPS" --jobs "$DUTY_JOBS" \
    --warm-timeout "$WARM_S" --stall-timeout "$WARM_S" --worker-log "$OUT/worker.log"
