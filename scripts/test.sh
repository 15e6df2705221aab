#!/usr/bin/env bash
# The test command of the README: installs what the build needs, then runs the whole suite in
# release mode (the kernels are numeric loops; a debug build would make the suite crawl).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Each target imports exactly the modules it declares (SwiftPM on Linux does not check this).
python3 scripts/check_imports.py
# The style: swift format's linter with the repository's .swift-format, no findings allowed.
scripts/lint.sh
# The command-line tests run the real `acon` binary.
swift build -c release --product acon
swift test -c release "$@"
# The package as a dependency of another package, by URL and version.
scripts/check_consumer.sh
# The DocC catalogs and every doc comment's symbol links (any DocC warning fails).
scripts/docs.sh
