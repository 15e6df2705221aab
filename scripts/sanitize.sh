#!/usr/bin/env bash
# The kernel, tensor and training tests under AddressSanitizer and ThreadSanitizer.
#
#   scripts/sanitize.sh [address|thread|all]     (default: all)
#
# Each sanitizer builds into its own folder (.build-asan, .build-tsan; release mode, since the
# kernels are numeric loops) and runs the ACONKernelsTests, ACONTensorTests and ACONTrainingTests
# targets one test at a time (--no-parallel: tests that change a process-wide setting, such as
# the worker count, must not overlap other tests). Exits non-zero on any sanitizer report or test
# failure. Not part of scripts/test.sh: the two builds take several minutes each.
set -euo pipefail
cd "$(dirname "$0")/.."

FILTER='^(ACONKernelsTests|ACONTensorTests|ACONTrainingTests)\.'
which=${1:-all}

run() {
  local sanitizer=$1 scratch=$2 options_name=$3 options=$4
  echo "== $sanitizer sanitizer ($scratch)"
  local log="$scratch/sanitize.log"
  mkdir -p "$scratch"
  set +e
  env "$options_name=$options" SWIFT_BACKTRACE=enable=no nice -n 10 \
    swift test -c release --sanitize="$sanitizer" --scratch-path "$scratch" --no-parallel \
    --filter "$FILTER" 2>&1 | tee "$log" | grep -E 'passed|failed|skipped|ERROR|WARNING: ThreadSanitizer|SUMMARY|error:' | tail -40
  local status=${PIPESTATUS[0]}
  set -e
  if grep -qE 'ERROR: AddressSanitizer|WARNING: ThreadSanitizer' "$log"; then
    echo "$sanitizer sanitizer: reports found (full log: $log)"
    return 1
  fi
  if ((status != 0)); then
    echo "$sanitizer sanitizer: tests failed with status $status (full log: $log)"
    return 1
  fi
  echo "$sanitizer sanitizer: clean"
}

failed=0
case "$which" in
  address | all) run address .build-asan ASAN_OPTIONS detect_leaks=0:halt_on_error=1 || failed=1 ;;&
  thread | all) run thread .build-tsan TSAN_OPTIONS halt_on_error=0:second_deadlock_stack=1 || failed=1 ;;
  address) ;;
  *) echo "usage: scripts/sanitize.sh [address|thread|all]" >&2; exit 2 ;;
esac
exit $failed
