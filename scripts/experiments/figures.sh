#!/usr/bin/env bash
# The figures of docs/RESULTS.md: training curves (6-epoch runs, seed 0) and learned beta.
# Run after reproduce.sh (it plots beta from that script's runs).
set -euo pipefail
cd "$(dirname "$0")/../.."
acon=${ACON:-.build/release/acon}
out=runs/reproduce
figures=docs/figures
mkdir -p "$figures"

# Curves need several epochs; the tables' runs have one. Their own directory, so that --reuse
# never mistakes a 1-epoch run for these (or deletes one).
"$acon" compare --model shufflenetv2-0.5x --activations relu,acon-c,meta-acon --seeds 0 \
  --epochs 6 --train-limit 10000 --out "$out/curves" --reuse | tee "$out/table-curves.md"
runs=$out/curves/shufflenetv2-0.5x
"$acon" plot curves --metrics "$runs-relu-s0" --metrics "$runs-acon-c-s0" --metrics "$runs-meta-acon-s0" \
  --labels ReLU,ACON-C,meta-ACON --output "$figures/curves-shufflenetv2-0.5x.svg"

# Learned switching factors of the 1-epoch seed-0 runs: per channel (ACON-C) and per image
# over 32 test images (meta-ACON; 256 make a 7.8 MB SVG).
runs=$out/shufflenetv2-0.5x/shufflenetv2-0.5x
"$acon" plot beta --weights "$runs-acon-c-s0/model.safetensors" \
  --output "$figures/beta-shufflenetv2-0.5x-acon-c.svg"
"$acon" plot beta --weights "$runs-meta-acon-s0/model.safetensors" \
  --dataset fashion-mnist --images 32 --output "$figures/beta-shufflenetv2-0.5x-meta-acon.svg"
