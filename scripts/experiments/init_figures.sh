#!/usr/bin/env bash
# Learned beta of the initialisation study's seed-0 runs (init_study.sh), reference against
# PyTorch initialisation: ACON-C's per-channel beta, and the beta meta-ACON's generator gives
# each of 32 test images (the paper's figure 8 form). `acon plot beta` also prints the summary
# per layer that docs/RESULTS.md quotes.
#   ./scripts/experiments/init_figures.sh [RUNS]      (default runs/init-study)
# Figures are PNG (about 0.8 MB each; the SVG of 32 images' scatter is larger).
set -euo pipefail
cd "$(dirname "$0")/../.."
acon=${ACON:-.build/release/acon}
runs=${1:-runs/init-study}
figures=docs/figures
mkdir -p "$figures"
tag=$(basename "$runs")
for init in reference pytorch; do
  if [[ -f $runs/acon-c-$init-s0/done ]]; then
    "$acon" plot beta --weights "$runs/acon-c-$init-s0/model.safetensors" \
      --output "$figures/beta-$tag-acon-c-$init.png"
  fi
  if [[ -f $runs/meta-acon-$init-s0/done ]]; then
    "$acon" plot beta --weights "$runs/meta-acon-$init-s0/model.safetensors" \
      --dataset fashion-mnist --images 32 --output "$figures/beta-$tag-meta-acon-$init.png"
  fi
done
