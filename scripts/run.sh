#!/usr/bin/env bash
# The main job of the README: installs what it needs, builds `acon` and runs its default job.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build -c release --product acon
.build/release/acon "$@"
