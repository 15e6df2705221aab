#!/usr/bin/env bash
# The long schedule of docs/RESULTS.md: ShuffleNetV2-0.5x (small stem) on the full Fashion-MNIST
# training set for 10 epochs (4,690 iterations) with the data set's augmentation (random
# horizontal flip), PyTorch's module initialisation (the better start of the initialisation
# study), the rest of the recipe as init_study.sh (batch 128, LR 0.1 linear to 0, label smoothing
# 0.1, weight decay 4e-5 on weights), tested after every epoch.
#
#   ./scripts/experiments/long_runs.sh [SEEDS] [ACTIVATIONS]
#       defaults: 0,1,2  relu,swish,acon-c,meta-acon;  EPOCHS=N (default 10), OUT=DIR
#       (default runs/long-<N>ep), SLOTS and ACON as for init_study.sh
#
# Then prints the tables (final test error over the seeds, and per-epoch test error per run and
# averaged over the seeds) and draws the seed-0 curves and learned beta into docs/figures/.
# Finished runs are kept and skipped, interrupted ones resume.
set -euo pipefail
cd "$(dirname "$0")/../.."
epochs=${EPOCHS:-10}
out=${OUT:-runs/long-${epochs}ep}
seeds=${1:-0,1,2}
activations=${2:-relu,swish,acon-c,meta-acon}
EPOCHS=$epochs AUGMENT=1 OUT=$out ./scripts/experiments/init_study.sh "$seeds" "$activations" pytorch
python3 scripts/experiments/init_table.py "$out"
python3 scripts/experiments/init_table.py --per-epoch "$out"

acon=${ACON:-.build/release/acon}
tag=$(basename "$out")
curves=() labels=()
for activation in ${activations//,/ }; do
  if [[ -f $out/$activation-pytorch-s0/done ]]; then
    curves+=(--metrics "$out/$activation-pytorch-s0")
    labels+=("$activation")
  fi
done
if [[ ${#curves[@]} -gt 0 ]]; then
  "$acon" plot curves "${curves[@]}" --labels "$(IFS=,; echo "${labels[*]}")" \
    --output "docs/figures/curves-$tag.png"
fi
ACON=$acon ./scripts/experiments/init_figures.sh "$out"
