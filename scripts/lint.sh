#!/usr/bin/env bash
# The style check of the test command: swift format's linter with the repository's .swift-format
# (2-space indent, 100 columns). --strict makes every finding an error, so the script fails on
# any. Most findings are layout, which the formatter fixes by itself:
#   swift format format --in-place --recursive --parallel Sources Tests Examples Package.swift
# The rest (names, forEach, trailing closures) need a hand edit or, where a name must stay (it
# mirrors the reference's), a `// swift-format-ignore: RuleName` comment on the declaration.
set -euo pipefail
cd "$(dirname "$0")/.."
paths=(Sources Tests Package.swift)
if [ -d Examples ]; then paths+=(Examples); fi
swift format lint --strict --recursive --parallel "${paths[@]}"
# The code's own rule: multiply-adds go through `plusProduct`
# (Sources/ACONKernels/MultiplyAdd.swift), never the standard library's always-fused
# `addingProduct`, which a build without FMA (`ACON_TARGET_CPU=generic`) turns into a call to
# libm's `fmaf` per lane.
if grep -rn --include='*.swift' 'addingProduct(' Sources | grep -v '^Sources/ACONKernels/MultiplyAdd.swift:'; then
  echo "lint: use plusProduct (Sources/ACONKernels/MultiplyAdd.swift), not addingProduct" >&2
  exit 1
fi
echo "lint: no findings"
