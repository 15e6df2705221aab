#!/usr/bin/env bash
# Regenerates the tables of docs/RESULTS.md: see scripts/experiments/README.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
epochs=${1:-3}
seeds=${2:-0,1,2}
scripts/setup.sh
swift build -c release --product acon
acon=.build/release/acon
out=runs/reproduce
mkdir -p "$out"
for model in shufflenetv2-0.5x mobilenetv1-0.25 resnet18; do
  "$acon" compare --model "$model" --activations relu,swish,acon-a,acon-b,acon-c,meta-acon \
    --seeds "$seeds" --epochs "$epochs" --out "$out" --reuse --quiet | tee "$out/table-$model.md"
done
"$acon" compare --model shufflenetv2-0.5x --activations meta-acon,meta-acon-layer,meta-acon-pixel \
  --seeds "$seeds" --epochs "$epochs" --out "$out" --reuse --quiet | tee "$out/table-ablation.md"
