#!/usr/bin/env bash
# Coverage-guided fuzzing of every reader of outside bytes, and of the ONNX writer (libFuzzer,
# AddressSanitizer).
#
#   scripts/fuzz/run.sh TARGET [SECONDS]   build, then fuzz TARGET for SECONDS (default 60)
#   scripts/fuzz/run.sh all [SECONDS]      every target in turn, SECONDS each
#   scripts/fuzz/run.sh build              build every target only
#   scripts/fuzz/run.sh seeds              regenerate the committed seed corpus (fuzz/corpus/)
#   scripts/fuzz/run.sh list               the target names
#
# The package's modules are built with coverage instrumentation into .build-fuzz; each target
# (fuzz/targets/NAME.swift + fuzz/Support.swift) links them into .build-fuzz/fuzz-NAME. A run
# starts from fuzz/corpus/NAME (committed, never written) and keeps what it finds in
# .build-fuzz/corpus/NAME; crashes land in .build-fuzz/artifacts/NAME/. Allocation bombs count
# as crashes: -malloc_limit_mb and -rss_limit_mb stop any input that asks for more.
# Environment: FUZZ_JOBS (parallel fuzzing processes per target, default 1), FUZZ_FLAGS (extra
# libFuzzer flags).
set -euo pipefail
cd "$(dirname "$0")/../.."

TARGETS=(${FUZZ_TARGETS:-safetensors idx idx-gzip cifar png jpeg imagefolder checkpoint pth onnx})
SCRATCH=.build-fuzz
SANITIZE=fuzzer,address

source_of() { case "$1" in idx-gzip) echo idx ;; *) echo "$1" ;; esac; }

build() {
  # The library modules only (libFuzzer brings its own main; the package's executables and
  # plugin tools would not link with these flags).
  for module in ACONTraining ACONInterop; do
    nice -n 10 swift build -c release --scratch-path "$SCRATCH" --target $module \
      -Xswiftc -sanitize=$SANITIZE -Xcc -fsanitize=fuzzer-no-link,address >&2
  done
  local release="$SCRATCH/release"
  local objects=()
  for module in ACONKernels ACONTensor ACONNN ACONModels ACONData ACONTraining ACONInterop CImageDecode CPlatform; do
    objects+=("$release/$module.build"/*.o)
  done
  for target in "${TARGETS[@]}"; do
    local binary="$SCRATCH/fuzz-$target"
    local source="fuzz/targets/$(source_of "$target").swift"
    # Relink only when a source, an object or the support file is newer than the binary.
    if [[ -x "$binary" ]] && [[ -z "$(find "$source" fuzz/Support.swift "${objects[@]}" -newer "$binary" 2>/dev/null | head -1)" ]]; then
      continue
    fi
    echo "linking $binary" >&2
    nice -n 10 swiftc -O -parse-as-library -sanitize=$SANITIZE -use-ld=lld -module-name FuzzTarget \
      -I "$release/Modules" -I Sources/CDNNL -I Sources/CZlib -I Sources/CJPEG -I Sources/CPNG \
      -Xcc -fmodule-map-file="$release/CImageDecode.build/module.modulemap" \
      -Xcc -fmodule-map-file="$release/CPlatform.build/module.modulemap" \
      -Xcc -ISources/CImageDecode/include -Xcc -ISources/CPlatform/include \
      fuzz/Support.swift "$source" "${objects[@]}" \
      -ldnnl -lgomp -lz -lpng -ljpeg -o "$binary"
  done
}

seeds() {
  for target in "${TARGETS[@]}"; do
    rm -rf "fuzz/corpus/$target"
    if [[ $target == idx-gzip ]]; then
      ASAN_OPTIONS=detect_leaks=0 ACON_FUZZ_GZIP=1 ACON_FUZZ_WRITE_SEEDS="fuzz/corpus/$target" "$SCRATCH/fuzz-$target"
    else
      ASAN_OPTIONS=detect_leaks=0 ACON_FUZZ_WRITE_SEEDS="fuzz/corpus/$target" "$SCRATCH/fuzz-$target"
    fi
  done
}

# Fuzzes one target and prints one summary line: executions, coverage, crashes.
fuzz() {
  local target=$1 seconds=$2
  local work="$SCRATCH/corpus/$target" artifacts="$SCRATCH/artifacts/$target/" log="$SCRATCH/logs/$target.log"
  mkdir -p "$work" "$artifacts" "$(dirname "$log")"
  local jobs=${FUZZ_JOBS:-1}
  # The ONNX target builds and exports a network per input (under AddressSanitizer, about 0.3 s on
  # a quiet machine): give it more time per input than the readers.
  local timeout=10
  if [[ $target == onnx ]]; then timeout=60; fi
  local parallel=()
  if ((jobs > 1)); then parallel=(-jobs="$jobs" -workers="$jobs"); fi
  set +e
  # -fork=0, one process: a crash stops the run (and leaves its input in $artifacts).
  SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 nice -n 10 "$SCRATCH/fuzz-$target" \
    "$work" "fuzz/corpus/$target" -max_total_time="$seconds" -timeout="$timeout" \
    -rss_limit_mb=2048 -malloc_limit_mb=1024 -max_len=8192 -print_final_stats=1 \
    -artifact_prefix="$artifacts" "${parallel[@]}" ${FUZZ_FLAGS:-} >"$log" 2>&1
  local status=$?
  set -e
  local executions coverage features crashes
  executions=$(grep -h 'stat::number_of_executed_units' "$log" | awk '{s += $2} END {print s + 0}')
  coverage=$(grep -ho 'cov: [0-9]*' "$log" | tail -1 | awk '{print $2}')
  features=$(grep -ho 'ft: [0-9]*' "$log" | tail -1 | awk '{print $2}')
  # Crashes, leaks, out-of-memory and timeouts count; slow units (-report_slow_units) do not.
  crashes=$(find "$artifacts" -type f ! -name 'slow-unit-*' | wc -l)
  printf '%-12s %5ss  executions %10s  cov %6s  ft %7s  corpus %5s  crashes %s  (exit %s, log %s)\n' \
    "$target" "$seconds" "$executions" "${coverage:-?}" "${features:-?}" "$(ls "$work" | wc -l)" \
    "$crashes" "$status" "$log"
  if ((crashes > 0)); then find "$artifacts" -type f ! -name 'slow-unit-*' | sed 's/^/    crash input: /'; fi
  return $((crashes > 0))
}

command=${1:-}
case "$command" in
  list) printf '%s\n' "${TARGETS[@]}" ;;
  build) build ;;
  seeds) build && seeds ;;
  all)
    build
    failed=0
    for target in "${TARGETS[@]}"; do fuzz "$target" "${2:-60}" || failed=1; done
    exit $failed
    ;;
  "" | -h | --help) sed -n '2,17p' "$0" ;;
  *)
    [[ " ${TARGETS[*]} " == *" $command "* ]] || { echo "unknown target '$command'; targets: ${TARGETS[*]}" >&2; exit 2; }
    build
    fuzz "$command" "${2:-60}"
    ;;
esac
