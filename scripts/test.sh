#!/usr/bin/env bash
# The test command of the README: installs what the build needs, then runs the whole suite in
# release mode (the kernels are numeric loops; a debug build would make the suite crawl).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The command-line tests run the real `acon` binary.
swift build -c release --product acon
swift test -c release "$@"
