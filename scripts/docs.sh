#!/usr/bin/env bash
# Builds the DocC documentation of the library modules a user works with (ACONNN and
# ACONTraining carry the articles) into .build/docs/<module>, and fails on any DocC warning: a
# broken ``symbol`` link in a doc comment or an article, an unknown <doc:...> article, a
# malformed catalog. The plugin extracts the symbols from a debug build of each module and its
# dependencies (in .build/, reused when nothing changed). ACONKernels (the engine's internals)
# and ACONInterop are left out to keep the build short. To read the result, serve .build/docs
# with any static web server and open /ACONNN/documentation/aconnn (likewise for the others).
# ACON_DOC_TARGETS="ACONNN" scripts/docs.sh builds only the modules named.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.build/docs
mkdir -p "$out"
for target in ${ACON_DOC_TARGETS:-ACONTensor ACONNN ACONModels ACONData ACONTraining}; do
  echo "docs: $target"
  swift package --allow-writing-to-directory "$out" generate-documentation \
    --target "$target" --output-path "$out/$target" --warnings-as-errors \
    --transform-for-static-hosting --hosting-base-path "$target"
done
echo "docs: built in $out"
