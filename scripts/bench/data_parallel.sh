#!/usr/bin/env bash
# Data-parallel throughput on this machine: the Fashion-MNIST model (ShuffleNetV2-0.5x ACON-C,
# 28x28, small-input stem), 10 steps of global batch 128, as 1 process with every core against
# 2 ranks with one core each (gradients reduced while the backward runs, and after it), rounds
# alternating; then the allreduce alone (`bench-allreduce`) for ShuffleNetV2-0.5x and ResNet-50.
#
#   scripts/bench/data_parallel.sh [ROUNDS] [path/to/acon]      (defaults: 3, .build/release/acon)
#
# Prints one line per run: images/s (from the run's last metrics line, its epoch's training
# throughput) and, for the ranks, rank 0's wait for the reductions after the backward per step.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
acon=${2:-.build/release/acon}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
common=(train --model shufflenetv2-0.5x --activation acon-c --train-limit 1280 --test-limit 16
  --epochs 1 --json)
throughput() { tail -1 "$1" | python3 -c 'import json, sys; print("%.1f" % json.load(sys.stdin)["images_per_second"])'; }
wait_ms() { grep -o '[0-9.]* ms per step waiting' "$1" | awk '{print $1}'; }
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
for ((r = 1; r <= rounds; r++)); do
  "$acon" "${common[@]}" --batch-size 128 --out "$out/one" >"$out/one.log" 2>"$out/one.err"
  echo "round $r  1 process x $(nproc) threads, batch 128:        $(throughput "$out/one.log") images/s"
  for overlap in "" --no-gradient-overlap; do
    rm -rf "$out/two"
    mpirun --oversubscribe --bind-to core -np 2 "$acon" "${common[@]}" --batch-size 64 $overlap \
      --out "$out/two" >"$out/two.log" 2>"$out/two.err"
    echo "round $r  2 ranks x 1 thread, 64 each ${overlap:-(overlapped)}: $(throughput "$out/two.log") images/s, $(wait_ms "$out/two.err") ms waiting after the backward"
  done
  rm -rf "$out/one"
done
for model in shufflenetv2-0.5x resnet50; do
  mpirun --oversubscribe --bind-to core -np 2 "$acon" bench-allreduce --model "$model" --activation acon-c 2>&1 | tail -1
done
