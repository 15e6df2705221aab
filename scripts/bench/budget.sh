#!/usr/bin/env bash
# Prints the per-op budget (measured time beside the floor at this machine's measured sgemm and
# copy rates) of the three training workloads of issue 18, as the Markdown tables README.md's
# "Where a step goes" shows. Usage: scripts/bench/budget.sh [path/to/acon] [--steps N]
set -euo pipefail
cd "$(dirname "$0")/../.."
acon="${1:-.build/release/acon}"
steps="${STEPS:-6}"
[ -x "$acon" ] || { echo "budget: build first (swift build -c release), or pass the binary" >&2; exit 1; }
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) processors"
echo
run() {
  "$acon" bench "$@" --steps "$steps" --warmup 2 --budget | sed -n '/^budget:/,/whole step/p'
  echo
}
run --model shufflenetv2-0.5x --activation acon-c --batch-size 128 --input-size 28 \
  --input-channels 1 --small-input --classes 10
run --model resnet50 --activation acon-c --batch-size 8 --input-size 224
run --model shufflenetv2-0.5x --activation acon-c --batch-size 32 --input-size 224
