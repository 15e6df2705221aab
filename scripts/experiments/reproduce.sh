#!/usr/bin/env bash
# Regenerates the tables of docs/RESULTS.md: see scripts/experiments/README.md.
#   ./scripts/experiments/reproduce.sh [SEEDS]        (default seeds 0,1,2)
# Finished runs under runs/reproduce are reused, so the script can be stopped and started again.
set -euo pipefail
cd "$(dirname "$0")/../.."
seeds=${1:-0,1,2}
acon=${ACON:-.build/release/acon}
if [[ -z ${ACON:-} ]]; then
  scripts/setup.sh
  swift build -c release --product acon
fi
out=runs/reproduce
mkdir -p "$out"
activations=relu,swish,acon-a,acon-b,acon-c,meta-acon

# One table per model; the scale per model is what two cores allow (see the README).
table() { # name, model, extra flags...
  local name=$1 model=$2
  shift 2
  "$acon" compare --model "$model" --seeds "$seeds" --out "$out/$model" --reuse "$@" | tee "$out/table-$name.md"
}
small=(--epochs 1 --train-limit 30000)
table shufflenetv2-0.5x shufflenetv2-0.5x --activations "$activations" "${small[@]}"
table ablation shufflenetv2-0.5x --activations meta-acon,meta-acon-layer,meta-acon-pixel "${small[@]}"
table mobilenetv1-0.25 mobilenetv1-0.25 --activations "$activations" "${small[@]}"
table shufflenetv2-0.25x shufflenetv2-0.25x --activations "$activations" "${small[@]}"
# ResNet-18 costs 20x more per image: 5,000 images, at batch 32 (LR 0.025, the batch-128 LR
# scaled linearly) so that it still gets 156 iterations (at batch 128 its 40 steps diverged).
table resnet18 resnet18 --activations "$activations" --epochs 1 --train-limit 5000 --test-limit 2000 \
  --batch-size 32 --lr 0.025
