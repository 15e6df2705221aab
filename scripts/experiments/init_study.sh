#!/usr/bin/env bash
# The initialisation study of docs/RESULTS.md: ShuffleNetV2-0.5x (small stem) on the full
# Fashion-MNIST training set, 2 epochs (938 iterations), batch 128, LR 0.1 linear to 0, label
# smoothing 0.1, weight decay 4e-5 on weights, no augmentation, for each activation under the
# reference initialisation and PyTorch's module defaults (`acon train --init`).
#
#   ./scripts/experiments/init_study.sh [SEEDS] [ACTIVATIONS] [INITS]
#       defaults: 0,1,2  relu,swish,acon-c,meta-acon  reference,pytorch
#   An init of the form BASE+GEN-generators (reference+pytorch-generators,
#   pytorch+reference-generators) starts the meta-ACON generators apart from the rest of the
#   network (`--init BASE --generator-init GEN`): which part of the start matters.
#   SLOTS=2 (default) runs two processes, each pinned to one core (taskset: acon's kernels take
#   their workers from the affinity mask); SLOTS=1 runs one process on every core.
#   python3 scripts/experiments/init_table.py      # the table, from the runs' metrics.jsonl
#
#   AUGMENT=1 trains with the data set's augmentation (default: none).
#   EPOCHS=N (default 2) sets the length; ITERATIONS=N instead stops after N iterations (the LR
#   schedule spans them; the batches come shuffled from the whole training set) and OUT=DIR
#   the runs' folder (default runs/init-study, or runs/init-study-<N>it with ITERATIONS).
#
# Runs go to $OUT/<activation>-<init>-s<seed>/ (a `done` file marks a finished one, which is
# skipped; an interrupted one continues from its checkpoint with --resume), so the script can be
# stopped and started again. Cells run seed by seed, so a partial grid has whole seeds.
set -euo pipefail
cd "$(dirname "$0")/../.."
seeds=${1:-0,1,2}
activations=${2:-relu,swish,acon-c,meta-acon}
inits=${3:-reference,pytorch}
slots=${SLOTS:-2}
acon=${ACON:-.build/release/acon}
if [[ -z ${ACON:-} ]]; then
  scripts/setup.sh
  swift build -c release --product acon
fi
epochs=${EPOCHS:-2}
augment=(--no-augment)
[[ -n ${AUGMENT:-} ]] && augment=()
length=(--epochs "$epochs")
out=${OUT:-runs/init-study}
if [[ -n ${ITERATIONS:-} ]]; then
  length=(--iterations "$ITERATIONS")
  out=${OUT:-runs/init-study-${ITERATIONS}it}
fi
mkdir -p "$out"

cells=()
for seed in ${seeds//,/ }; do
  for activation in ${activations//,/ }; do
    for init in ${inits//,/ }; do cells+=("$activation $init $seed"); done
  done
done

run_cell() { # activation init seed [taskset cpu]
  local activation=$1 init=$2 seed=$3 cpu=${4:-}
  local dir="$out/$activation-$init-s$seed"
  if [[ -f $dir/done ]]; then return; fi
  local resume=()
  [[ -f $dir/checkpoint.safetensors ]] && resume=(--resume)
  local pin=()
  [[ -n $cpu ]] && pin=(taskset -c "$cpu")
  local start=(--init "${init%%+*}")
  if [[ $init == *+*-generators ]]; then
    local generators=${init#*+}
    start+=(--generator-init "${generators%-generators}")
  fi
  echo "$(date -u +%H:%M:%S) start $activation $init seed $seed ${cpu:+(cpu $cpu)}"
  "${pin[@]}" "$acon" train --model shufflenetv2-0.5x --activation "$activation" "${start[@]}" \
    --seed "$seed" "${length[@]}" ${augment[@]+"${augment[@]}"} --quiet --out "$dir" "${resume[@]}" \
    >"$dir.log" 2>&1 && touch "$dir/done" ||
    echo "$(date -u +%H:%M:%S) FAILED $activation $init seed $seed (see $dir.log)"
  echo "$(date -u +%H:%M:%S) done $activation $init seed $seed: $(tail -1 "$dir.log" | cut -c1-120)"
}

if [[ $slots -le 1 ]]; then
  for cell in "${cells[@]}"; do run_cell $cell; done
else
  # Slot k takes cells k, k + slots, ... pinned to core k.
  for ((k = 0; k < slots; k++)); do
    (
      for ((i = k; i < ${#cells[@]}; i += slots)); do run_cell ${cells[$i]} "$k"; done
    ) &
  done
  wait
fi
python3 scripts/experiments/init_table.py "$out"
